"""``custom``: facts from the labels (task, range, classes), dataset.json and flags, the seeded
split by video, media suffixes, and bad rows named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hcm.core.errors import UsageError
from hcm.pipeline.datasets import AnnotationError, SplitFile, get_dataset
from hcm.pipeline.datasets.base import DUPLICATE_ROW, INVALID_LABEL
from hcm.training.settings import DatasetFacts


def corpus(root: Path, rows: list[str], header: str = "video_id,clip_id,text,label",
           media: dict[str, str] | None = None) -> Path:
    """``label.csv`` with ``rows``; every clip gets an empty ``.mp4`` unless ``media`` names its suffix."""
    (root / "Raw").mkdir(parents=True)
    (root / "label.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    for row in rows:
        video, clip = row.split(",")[:2]
        if video and clip:
            suffix = (media or {}).get(f"{video}/{clip}", ".mp4")
            if suffix:
                (root / "Raw" / video).mkdir(exist_ok=True)
                (root / "Raw" / video / f"{clip}{suffix}").write_bytes(b"")
    return root


def read(root: Path, options: dict | None = None, split_file: SplitFile | None = None):
    adapter = get_dataset("custom")
    adapter.configure(options or {}, root)
    return adapter, adapter.select(root, split_file=split_file, rejected=True).utterances


def videos_rows(labels: list[str], videos: int = 6) -> list[str]:
    return [f"v{k % videos},{k // videos},text {k},{label}" for k, label in enumerate(labels)]


def test_numbers_make_a_regression_task_with_the_observed_range(tmp_path):
    adapter, items = read(corpus(tmp_path, videos_rows(["-2", "0.5", "3", "1", "-1", "2"])))
    assert adapter.task == "regression" and adapter.label_range == (-2.0, 3.0)
    facts = DatasetFacts.from_dict(adapter.recipe()["facts"])
    assert (facts.key_metric, facts.higher_is_better, facts.label_range) == ("mae", False, (-2.0, 3.0))
    assert sorted(u.label for u in items) == [-2.0, -1.0, 0.5, 1.0, 2.0, 3.0]


def test_names_make_a_classification_task_with_sorted_classes(tmp_path):
    adapter, items = read(corpus(tmp_path, videos_rows(["sad", "happy", "angry", "happy", "sad", "sad"])))
    assert adapter.task == "classification" and adapter.classes == ["angry", "happy", "sad"]
    facts = DatasetFacts.from_dict(adapter.recipe()["facts"])
    assert facts.class_names == ("angry", "happy", "sad") and facts.key_metric == "weighted_f1"
    assert {u.id: u.label for u in items}["v0$_$0"] == 2


def test_flags_fix_the_class_order_and_reject_other_names(tmp_path):
    root = corpus(tmp_path, videos_rows(["sad", "happy", "angry", "happy", "sad", "bored"]))
    adapter, items = read(root, {"classes": "sad,happy,angry"})
    assert adapter.classes == ["sad", "happy", "angry"]
    bad = [u for u in items if u.dropped]
    assert len(bad) == 1 and bad[0].dropped[0] == INVALID_LABEL
    assert "label.csv line 7" in bad[0].dropped[1] and "'bored'" in bad[0].dropped[1]


def test_label_range_flag_rejects_scores_outside_it(tmp_path):
    adapter, items = read(corpus(tmp_path, videos_rows(["1", "2", "9", "0", "3", "x"])), {"label_range": "0,5"})
    assert adapter.label_range == (0.0, 5.0)
    reasons = {u.id: u.dropped[1] for u in items if u.dropped}
    assert "outside the label range [0, 5]" in reasons["v2$_$0"] and "line 4" in reasons["v2$_$0"]
    assert "not a number" in reasons["v5$_$0"]


def test_dataset_json_gives_the_facts_and_flags_win(tmp_path):
    root = corpus(tmp_path, videos_rows(["1", "2", "3", "4", "5", "2"]))
    (root / "dataset.json").write_text(json.dumps({"classes": ["1", "2", "3", "4", "5"], "split_seed": 4}))
    adapter, _ = read(root)
    assert adapter.task == "classification" and adapter.classes == ["1", "2", "3", "4", "5"]
    assert adapter.recipe()["split"]["seed"] == 4
    adapter, _ = read(root, {"split_seed": 7})
    assert adapter.recipe()["split"]["seed"] == 7
    adapter, _ = read(root, {"label_range": "0,10"})  # a flag of the other task replaces the file's classes
    assert adapter.task == "regression" and adapter.label_range == (0.0, 10.0)


@pytest.mark.parametrize("content, message", [
    ({"classes": ["a"]}, "two or more distinct"),
    ({"label_range": [3, 1]}, "LOW < HIGH"),
    ({"colour": "red"}, "unknown key"),
    ({"task": "ranking"}, "is not 'regression'"),
])
def test_bad_dataset_json_is_refused_naming_the_file(tmp_path, content, message):
    root = corpus(tmp_path, videos_rows(["1", "2", "3"]))
    (root / "dataset.json").write_text(json.dumps(content))
    with pytest.raises(UsageError, match=message) as error:
        read(root)
    assert "dataset.json" in str(error.value)


def test_without_mode_whole_videos_go_to_one_split_seeded(tmp_path):
    labels = [str(k % 5) for k in range(40)]
    root = corpus(tmp_path, videos_rows(labels, videos=10))
    adapter, items = read(root)
    splits_of = {}
    for u in items:
        splits_of.setdefault(u.group, set()).add(u.split)
    assert all(len(s) == 1 for s in splits_of.values())  # no video in two splits
    counts = adapter.recipe()["split"]["clips"]
    assert counts["train"] > counts["test"] > 0 and counts["valid"] > 0 and sum(counts.values()) == 40
    recorded = adapter.recipe()["split"]["videos"]
    assert {v: s for s, videos in recorded.items() for v in videos} == {g: next(iter(s)) for g, s in splits_of.items()}
    assert any("seed 0" in line for line in adapter.report())
    again = {u.id: u.split for u in read(root)[1]}
    assert again == {u.id: u.split for u in items}
    other = {u.id: u.split for u in read(root, {"split_seed": 1})[1]}
    assert other != again


def test_a_mode_column_or_a_split_file_replaces_the_drawn_split(tmp_path):
    rows = [f"v{k},0,t,{k},{'train' if k < 3 else 'valid' if k == 3 else 'test'}" for k in range(5)]
    adapter, items = read(corpus(tmp_path / "a", rows, "video_id,clip_id,text,label,mode"))
    assert [u.split for u in items] == ["train"] * 3 + ["valid", "test"]
    assert adapter.recipe()["split"] == {"method": "mode column"}
    root = corpus(tmp_path / "b", videos_rows(["1", "2", "3"], videos=3))
    split = tmp_path / "split.csv"
    split.write_text("id,split\nv0$_$0,test\nv1$_$0,train\nv2$_$0,valid\n")
    adapter, items = read(root, split_file=SplitFile.read(split))
    assert {u.id: u.split for u in items} == {"v0$_$0": "test", "v1$_$0": "train", "v2$_$0": "valid"}
    assert adapter.recipe()["split"] == {"method": "split file"}


def test_too_few_videos_for_a_split_is_a_clear_error(tmp_path):
    with pytest.raises(AnnotationError, match="only 2 video"):
        read(corpus(tmp_path, videos_rows(["1", "2", "3", "4"], videos=2)))


def test_media_suffixes_audio_only_and_missing_clips(tmp_path):
    rows = videos_rows(["1", "2", "3", "4"], videos=4)
    media = {"v0/0": ".avi", "v1/0": ".wav", "v2/0": ".flac", "v3/0": ""}
    _, items = read(corpus(tmp_path, rows, media=media))
    by_id = {u.id: u for u in items}
    assert by_id["v0$_$0"].video.path.name == "0.avi" and by_id["v0$_$0"].audio.path.name == "0.avi"
    assert by_id["v1$_$0"].video is None and by_id["v1$_$0"].audio.path.name == "0.wav"
    assert by_id["v2$_$0"].video is None and by_id["v2$_$0"].audio.path.suffix == ".flac"
    assert by_id["v3$_$0"].video.path == tmp_path / "Raw" / "v3" / "0.mp4"  # missing: masked when decoded


def test_duplicate_ids_and_empty_ids_are_rejected_rows(tmp_path):
    rows = videos_rows(["1", "2", "3"], videos=3) + ["v0,0,again,2", ",3,no video,1"]
    _, items = read(corpus(tmp_path, rows))
    bad = {u.dropped[0]: u.dropped[1] for u in items if u.dropped}
    assert "duplicate id 'v0$_$0' (line 2 is kept)" in bad[DUPLICATE_ROW] and "line 5" in bad[DUPLICATE_ROW]
    assert "line 6: empty video_id" in bad["invalid id"]


def test_a_label_file_without_the_columns_names_them(tmp_path):
    root = tmp_path / "c"
    (root / "Raw").mkdir(parents=True)
    (root / "label.csv").write_text("video,clip,label\nv,0,1\n")
    with pytest.raises(AnnotationError, match=r"missing column\(s\) \['video_id', 'clip_id', 'text'\]"):
        read(root)


def test_other_datasets_refuse_the_custom_flags(tmp_path):
    with pytest.raises(UsageError, match="--label-range: only --dataset custom"):
        get_dataset("mosi").configure({"label_range": "0,1", "classes": None})


def test_a_label_column_empty_everywhere_is_a_clear_error(tmp_path):
    with pytest.raises(AnnotationError, match="label column is empty in every row"):
        read(corpus(tmp_path, videos_rows(["", "", ""], videos=3)))


def test_ids_that_are_paths_and_links_out_of_raw_are_never_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0.mp4").write_bytes(b"secret")
    root = corpus(tmp_path / "corpus", videos_rows(["1", "2", "3"], videos=3))
    with open(root / "label.csv", "a", encoding="utf-8") as handle:
        handle.write("../../outside,0,escape,1\nv0,../x,escape,1\n")
    (root / "Raw" / "linked").symlink_to(outside)  # a video folder that is a link out of Raw/
    (root / "Raw" / "v1" / "9.mp4").symlink_to(outside / "0.mp4")  # a clip file that is a link out
    with open(root / "label.csv", "a", encoding="utf-8") as handle:
        handle.write("linked,0,link,1\nv1,9,link,1\n")
    _, items = read(root)
    bad = [u.dropped[1] for u in items if u.dropped]
    assert sum("is a path, not a name" in reason for reason in bad) == 2, bad
    assert sum("leads out of the dataset folder" in reason for reason in bad) == 2, bad
    kept = [u for u in items if not u.dropped]
    assert len(kept) == 3 and all(u.audio.path.resolve().is_relative_to(root / "Raw") for u in kept)
