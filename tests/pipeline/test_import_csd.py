"""``hcm import csd``: a set of SDK computational sequences written by the test imports into an
ordinary cache split by the standard folds, trains and evaluates; bad folders and files are
clear errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from csd_files import FILES, write_mosi_set, write_sequence
from typer.testing import CliRunner

from hcm.cache import FeatureCache
from hcm.cli import app
from hcm.core.configs import configs_dir
from hcm.core.errors import UsageError
from hcm.pipeline.importers.csd import NOT_IN_FOLD, import_csd
from hcm.pipeline.importers.csd_file import CsdError, Sequence

runner = CliRunner()
FOLDS = json.loads((configs_dir() / "datasets" / "folds" / "mosi.json").read_text())
VIDEOS = {FOLDS["train"][0]: 3, FOLDS["train"][1]: 3, FOLDS["train"][2]: 2, FOLDS["valid"][0]: 2,
          FOLDS["valid"][1]: 2, FOLDS["test"][0]: 2, FOLDS["test"][1]: 2, "notInAFold1": 2}


@pytest.fixture(scope="module")
def csd_set(tmp_path_factory):
    return write_mosi_set(tmp_path_factory.mktemp("csd") / "CMU_MOSI", VIDEOS)


def test_the_shipped_folds_are_the_sdk_standard_folds():
    assert [len(FOLDS[s]) for s in ("train", "valid", "test")] == [52, 10, 31]
    mosei = json.loads((configs_dir() / "datasets" / "folds" / "mosei.json").read_text())
    assert [len(mosei[s]) for s in ("train", "valid", "test")] == [2249, 300, 678]  # as REFERENCE.md counts them
    assert len({v for s in ("train", "valid", "test") for v in mosei[s]}) == 3227


def test_segments_follow_the_folds_and_unfolded_videos_are_reported(csd_set, tmp_path):
    summary = import_csd(csd_set.folder, "mosi", out=tmp_path / "cache", progress=False)
    assert summary.split_counts == {"train": 8, "valid": 4, "test": 4}
    assert [item for item, _ in summary.skipped] == ["notInAFold1$_$1", "notInAFold1$_$2"]
    assert all(reason.startswith(NOT_IN_FOLD) for _, reason in summary.skipped)
    assert "notInAFold1$_$1: not in a standard fold" in summary.format()
    with FeatureCache(tmp_path / "cache") as cache:
        items = {item.id: item for item in cache}
        failures = cache.manifest["failures"]
    assert {f["id"] for f in failures} == {"notInAFold1$_$1", "notInAFold1$_$2"}
    video = FOLDS["train"][0]
    for number, (start, end, label) in enumerate(csd_set.segments[video], start=1):
        item = items[f"{video}$_${number}"]  # segments numbered in time order from 1
        assert item.split == "train" and item.label == pytest.approx(label)
        assert item.text == " ".join(csd_set.words[video][number - 1])
        assert len(item.features["csd_audio"]) == pytest.approx((end - start) / 0.1, abs=2)  # unaligned rows
        n_text = len(item.features["csd_text"])
        assert item.features["text_edges"].tolist() == [[k, k - 1] for k in range(1, n_text)]


def test_align_words_gives_one_row_per_word_in_every_modality(csd_set, tmp_path):
    import_csd(csd_set.folder, "mosi", out=tmp_path / "cache", align="words", progress=False)
    with FeatureCache(tmp_path / "cache") as cache:
        for item in cache:
            n_words = len(item.text.split())
            assert {name: len(item.features[name]) for name in ("csd_text", "csd_video", "csd_audio")} == \
                dict.fromkeys(("csd_text", "csd_video", "csd_audio"), n_words)
        assert cache.meta.recipe["source"]["align"] == "words"


def test_other_sequences_are_chosen_by_name(csd_set, tmp_path):
    import_csd(csd_set.folder, "mosi", out=tmp_path / "cache", sequences={"audio": "OpenSMILE"}, progress=False)
    with FeatureCache(tmp_path / "cache") as cache:
        assert cache.meta.recipe["source"]["files"]["audio"]["file"] == FILES["OpenSMILE"]
        assert next(iter(cache)).features["csd_audio"].shape[1] == 3


@pytest.mark.slow
def test_import_train_evaluate_through_the_cli(csd_set, tmp_path):
    work = str(tmp_path / "work")
    imported = runner.invoke(app, ["--workdir", work, "import", "csd", str(csd_set.folder), "--dataset", "mosi",
                                   "--quiet"])
    assert imported.exit_code == 0, imported.output
    assert "16 imported (train 8, valid 4, test 4)" in imported.output and "2 skipped" in imported.output
    trained = runner.invoke(app, ["--workdir", work, "train", "--epochs", "1", "--model-size", "small", "--quiet"])
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(app, ["--workdir", work, "evaluate", "--split", "test", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    assert report["items"] == 4 and "acc7" in report["metrics"]


def test_a_missing_sequence_names_what_was_found(csd_set, tmp_path):
    with pytest.raises(UsageError, match="video 'OpenFace_2' \\(none\\).*CMU_MOSI_COVAREP.csd \\(COVAREP\\)"):
        import_csd(csd_set.folder, "mosi", out=tmp_path / "c", sequences={"video": "OpenFace_2"}, progress=False)
    result = runner.invoke(app, ["--workdir", str(tmp_path / "w"), "import", "csd", str(tmp_path / "nowhere"),
                                 "--dataset", "mosi"])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_files_not_in_the_sdk_format_are_refused_by_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "CMU_MOSI_COVAREP.csd").write_text("not hdf5")
    result = runner.invoke(app, ["--workdir", str(tmp_path / "w"), "import", "csd", str(tmp_path / "a"),
                                 "--dataset", "mosi"])
    assert result.exit_code == 2 and "CMU_MOSI_COVAREP.csd: not an HDF5 computational sequence" in result.output
    two_roots = tmp_path / "two.csd"
    with h5py.File(two_roots, "w") as handle:
        handle.create_group("a")
        handle.create_group("b")
    with pytest.raises(CsdError, match="one root group"):
        Sequence(two_roots)
    bad = tmp_path / "bad.csd"
    write_sequence(bad, "COVAREP", {"v": (np.zeros((3, 2)), np.zeros((2, 2)))})
    with pytest.raises(CsdError, match="data/v: intervals \\(2, 2\\) do not give"):
        Sequence(bad).get("v")
    assert Sequence(bad).metadata["root name"] == "COVAREP"  # metadata: JSON strings


def test_unknown_dataset_and_alignment_are_usage_errors(csd_set, tmp_path):
    with pytest.raises(UsageError, match="mosi, mosei"):
        import_csd(csd_set.folder, "sims", progress=False)
    with pytest.raises(UsageError, match="--align"):
        import_csd(csd_set.folder, "mosi", align="phones", progress=False)
