"""The MELD adapter on CSVs written here with the archive's exact columns and odd characters."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from hcm.pipeline.datasets import DatasetRootError, get_dataset
from hcm.pipeline.datasets.meld import MELD_COLUMNS, MELD_FILES


def _row(
    number: int, text: str, emotion: str, dialogue: str, turn: str, sentiment: str = "neutral"
) -> list[str]:
    return [str(number), text, "Chandler", emotion, sentiment, dialogue, turn, "8", "21",
            "0:16:41,126", "00:16:44,337"]


TRAIN = [
    _row(1, "Oh my God, heâ€™s lost it.", "surprise", "1", "0", "negative"),
    _row(2, "Youâ€™re right", "Joy", "0", "1", "positive"),
    _row(3, "also, Iâ€™m so ‘curly’", "neutral", "0", "0"),
    _row(4, "third", "anger", "0", "2", "negative"),
    _row(5, "fourth", "disgust", "0", "10", "negative"),
    _row(6, "fifth", "fear", "0", "3", "negative"),
    _row(7, "bad emotion", "boredom", "0", "4"),
    _row(8, "bad id", "joy", "x", "5"),
]
DEV = [_row(1, "dev line", "sadness", "0", "0", "negative")]
TEST = [_row(1, "", "neutral", "0", "0"), _row(2, "test two", "joy", "0", "1", "positive")]


def write_meld(root: Path) -> Path:
    for (_split, (name, folder)), rows in zip(MELD_FILES.items(), (TRAIN, DEV, TEST)):
        (root / folder).mkdir(parents=True)
        with open(root / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(MELD_COLUMNS)
            writer.writerows(rows)
    with open(root / "train_sent_emo.csv", "ab") as handle:  # a row with a byte that is not UTF-8
        handle.write(b"9,caf\xe9,Ross,joy,positive,2,0,1,1,0:00:01,000,0:00:02,000\n")
    return root


def test_splits_ids_order_and_classes(tmp_path: Path) -> None:
    adapter = get_dataset("meld")
    assert adapter.classes == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    assert adapter.task == "classification"
    items = adapter.utterances(write_meld(tmp_path))
    assert [(u.split, u.id) for u in items] == [
        ("train", "train_dia0_utt0"), ("train", "train_dia0_utt1"), ("train", "train_dia0_utt2"),
        ("train", "train_dia0_utt3"), ("train", "train_dia0_utt10"), ("train", "train_dia1_utt0"),
        ("train", "train_dia2_utt0"),
        ("valid", "dev_dia0_utt0"),
        ("test", "test_dia0_utt0"), ("test", "test_dia0_utt1"),
    ]
    assert [u.label for u in items[:6]] == [0, 4, 6, 2, 5, 1]
    assert [u.position for u in items[:5]] == [0, 1, 2, 3, 4]


def test_text_is_kept_as_written_and_bad_bytes_do_not_crash(tmp_path: Path) -> None:
    items = {(u.split, u.id): u for u in get_dataset("meld").utterances(write_meld(tmp_path))}
    assert items["train", "train_dia1_utt0"].text == "Oh my God, heâ€™s lost it."
    assert items["train", "train_dia0_utt0"].text == "also, Iâ€™m so ‘curly’"
    assert items["train", "train_dia2_utt0"].text == "caf\ufffd"
    assert items["test", "test_dia0_utt0"].text == ""


def test_labels_context_and_clips(tmp_path: Path) -> None:
    root = write_meld(tmp_path)
    items = {(u.split, u.id): u for u in get_dataset("meld").utterances(root)}
    third = items["train", "train_dia0_utt2"]
    assert third.labels["Emotion"] == "anger" and third.labels["Sentiment"] == "negative"
    assert third.labels["Speaker"] == "Chandler" and third.labels["StartTime"] == "0:16:41,126"
    assert third.context_before == ["also, Iâ€™m so ‘curly’", "Youâ€™re right"]
    assert third.context_after == ["fifth", "fourth"]
    assert third.group == "0"
    assert third.video.path == root / "train_splits" / "dia0_utt2.mp4"
    assert third.audio == third.video
    assert items["valid", "dev_dia0_utt0"].video.path == root / "dev_splits_complete" / "dia0_utt0.mp4"
    test_clips = root / "output_repeated_splits_test"
    assert items["test", "test_dia0_utt1"].video.path == test_clips / "dia0_utt1.mp4"
    assert items["test", "test_dia0_utt1"].context_before == [""]


def test_malformed_rows_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        get_dataset("meld").utterances(write_meld(tmp_path))
    messages = [r.getMessage() for r in caplog.records]
    assert any("train_sent_emo.csv line 8" in m and "boredom" in m for m in messages)
    assert any("train_sent_emo.csv line 9" in m and "not integers" in m for m in messages)


def test_root_error_names_the_csvs_and_folders(tmp_path: Path) -> None:
    (tmp_path / "train_sent_emo.csv").write_text(",".join(MELD_COLUMNS) + "\n")
    with pytest.raises(DatasetRootError) as caught:
        get_dataset("meld").utterances(tmp_path)
    message = str(caught.value)
    assert "dev_sent_emo.csv" in message and "output_repeated_splits_test/" in message
    assert "Found: train_sent_emo.csv" in message and "affective-meld" in message


def test_malformed_rows_are_rejected_rows_and_bad_bytes_are_noted(tmp_path: Path) -> None:
    rows = get_dataset("meld").utterances(write_meld(tmp_path), rejected=True)
    dropped = {u.id: u.dropped[0] for u in rows if u.dropped is not None}
    assert dropped == {"train_dia0_utt4": "invalid label", "train_sent_emo.csv:9": "invalid id"}
    repaired = next(u for u in rows if u.id == "train_dia2_utt0")
    assert repaired.text == "caf\ufffd"
    assert repaired.notes == {"text_repair": "train_sent_emo.csv line 10: bytes that are not UTF-8 were "
                                             "replaced by U+FFFD"}
    assert [u.split for u in rows] == ["train"] * 9 + ["valid"] + ["test"] * 2
