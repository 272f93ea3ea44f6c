"""The ``mosei`` adapter on CMU's own archive layout: the same clips as in the MMSA layout give
the same items and the same cache; a broken archive is reported by file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mosei_archive import write_both_layouts

from hcm.cache import FeatureCache
from hcm.pipeline.datasets import DatasetRootError, get_dataset
from hcm.pipeline.datasets.base import UNKNOWN_SPLIT
from hcm.pipeline.extract import extract
from hcm.pipeline.profiles import get_profile
from hcm.pipeline.sample import make_sample

SAME = ("id", "split", "label", "text", "group", "position", "context_before", "context_after")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("mosei-layouts")
    make_sample("mosei", base / "sample", n=10, seed=5, faults=True, progress=False)
    write_both_layouts(base / "sample", base / "mmsa", base / "cmu")
    return base / "mmsa", base / "cmu"


def test_both_layouts_give_the_same_utterances(layouts):
    mmsa, cmu = (get_dataset("mosei").utterances(root) for root in layouts)
    assert len(mmsa) == len(cmu) == 10
    for left, right in zip(mmsa, cmu):
        assert {f: getattr(left, f) for f in SAME} == {f: getattr(right, f) for f in SAME}
        assert left.labels["annotation"] == right.labels["annotation"]
        assert left.video.path.relative_to(layouts[0]) != right.video.path.relative_to(layouts[1])
        assert left.video.path.exists() == right.video.path.exists()
    assert set(cmu[0].labels) >= {"happy", "sad", "anger", "surprise", "disgust", "fear"}


@pytest.mark.slow
def test_both_layouts_give_the_same_cache(layouts, tmp_path):
    profile = get_profile("tiny", frames=2, segments=2)
    for root, out in zip(layouts, ("mmsa", "cmu")):
        extract("mosei", root, tmp_path / out, profile, workers=0, progress=False)
    with FeatureCache(tmp_path / "mmsa") as left, FeatureCache(tmp_path / "cmu") as right:
        a, b = list(left), list(right)
        assert left.meta.recipe["plan"] == right.meta.recipe["plan"]
    assert [i.id for i in a] == [i.id for i in b] and len(a) == 10
    for x, y in zip(a, b):
        assert (x.split, x.label, x.text, x.group, x.position, x.masks) == (y.split, y.label, y.text, y.group,
                                                                             y.position, y.masks)
        assert set(x.notes) == set(y.notes)  # the notes name each layout's own paths
        assert set(x.features) == set(y.features)
        for name in x.features:
            assert np.array_equal(x.features[name], y.features[name]), (x.id, name)


def test_a_bad_transcript_line_is_rejected_naming_file_and_line(layouts, tmp_path):
    import shutil

    cmu = tmp_path / "cmu"
    shutil.copytree(layouts[1], cmu)
    transcript = next((cmu / "Raw/Transcript/Segmented/Combined").glob("*.txt"))
    transcript.write_text(transcript.read_text() + "no separators here\n")
    items = get_dataset("mosei").utterances(cmu, rejected=True)
    bad = [u for u in items if u.dropped]
    assert len(bad) == 1 and f"{transcript} line" in bad[0].dropped[1]
    assert "<video_id>___<segment>" in bad[0].dropped[1]


def test_an_archive_without_the_labels_file_names_it(layouts, tmp_path):
    import shutil

    cmu = tmp_path / "cmu"
    shutil.copytree(layouts[1], cmu)
    (cmu / "Labels" / "CMU_MOSEI_Labels.csd").unlink()
    with pytest.raises(DatasetRootError, match="Missing: CMU_MOSEI_Labels.csd"):
        get_dataset("mosei").check_root(cmu)


def test_unfolded_videos_are_rejected_rows(tmp_path):
    from csd_files import write_sequence

    root = tmp_path / "cmu"
    (root / "Raw/Videos/Segmented/Combined").mkdir(parents=True)
    (root / "Raw/Transcript/Segmented/Combined").mkdir(parents=True)
    (root / "Raw/Transcript/Segmented/Combined/myvideo.txt").write_text("myvideo___0___1.0___3.0___hello\n")
    write_sequence(root / "CMU_MOSEI_Labels.csd", "All Labels",
                   {"myvideo": (np.array([[1.0, 0, 0, 0, 0, 0, 0]]), np.array([[1.0, 3.0]]))})
    (item,) = get_dataset("mosei").utterances(root, rejected=True)
    assert item.dropped[0] == UNKNOWN_SPLIT and "none of the CMU-MultimodalSDK standard folds" in item.dropped[1]
