"""The MOSEI (MMSA layout) adapter on label.csv files written here."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from hcm.pipeline.datasets import AnnotationError, DatasetRootError, get_dataset
from hcm.pipeline.datasets.mosei import MOSEI_COLUMNS

ROWS = [
    # video_id, clip_id, text, label, label_T, label_A, label_V, annotation, mode
    ["188343", "10", "ten", "1.2", "1.0", "", "0.5", "Positive", "train"],
    ["188343", "2", "two", "-0.4", "", "", "", "Neutral", "train"],
    ["188343", "1", "one", "0.0", "0", "0", "0", "Neutral", "train"],
    ["188343", "3", "", "-2.6", "-2", "-3", "-1", "Negative", "train"],
    ["0a2bK1EP5UQ", "007", "zero zero seven", "3.0", "", "", "", "Positive", "test"],
    ["0a2bK1EP5UQ", "01", "zero one", "-1.0", "", "", "", "Negative", "test"],
    ["-3g5yACwYnA", "0", "valid clip", "0.6", "", "", "", "Positive", "valid"],
    ["-3g5yACwYnA", "1", "bad label", "high", "", "", "", "Positive", "valid"],
    ["-3g5yACwYnA", "2", "bad mode", "0.1", "", "", "", "Neutral", "training"],
    ["-3g5yACwYnA", "3", "nan label", "nan", "", "", "", "Neutral", "valid"],
]


def write_mosei(root: Path, rows: list[list[str]] = ROWS, columns=MOSEI_COLUMNS) -> Path:
    (root / "Raw").mkdir(parents=True)
    with open(root / "label.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return root


def test_ids_are_strings_and_order_is_split_group_position(tmp_path: Path) -> None:
    items = get_dataset("mosei").utterances(write_mosei(tmp_path))
    assert [u.id for u in items] == [
        "188343$_$1", "188343$_$2", "188343$_$3", "188343$_$10",
        "-3g5yACwYnA$_$0",
        "0a2bK1EP5UQ$_$01", "0a2bK1EP5UQ$_$007",
    ]
    assert [u.split for u in items] == ["train"] * 4 + ["valid"] + ["test"] * 2
    assert [u.position for u in items] == [0, 1, 2, 3, 0, 0, 1]
    assert items[-1].group == "0a2bK1EP5UQ"


def test_labels_media_and_context(tmp_path: Path) -> None:
    root = write_mosei(tmp_path)
    items = {u.id: u for u in get_dataset("mosei").utterances(root)}
    ten = items["188343$_$10"]
    assert ten.label == pytest.approx(1.2) and isinstance(ten.label, float)
    assert ten.labels == {"label_T": 1.0, "label_A": None, "label_V": 0.5, "annotation": "Positive"}
    assert ten.video.path == root / "Raw" / "188343" / "10.mp4" and ten.video.start is None
    assert ten.audio == ten.video
    assert ten.context_before == ["two", ""] and ten.context_after == []
    one = items["188343$_$1"]
    assert one.context_before == [] and one.context_after == ["two", ""]
    assert items["188343$_$3"].text == ""  # empty transcripts are kept
    assert items["0a2bK1EP5UQ$_$007"].context_before == ["zero one"]


def test_malformed_rows_are_skipped_with_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        items = get_dataset("mosei").utterances(write_mosei(tmp_path))
    assert {u.id for u in items if u.group == "-3g5yACwYnA"} == {"-3g5yACwYnA$_$0"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("label.csv line 9" in m and "non-numeric label" in m for m in messages)
    assert any("label.csv line 10" in m and "'training'" in m for m in messages)
    assert any("label.csv line 11" in m for m in messages)


def test_split_filter(tmp_path: Path) -> None:
    items = get_dataset("mosei").utterances(write_mosei(tmp_path), splits=["test"])
    assert {u.split for u in items} == {"test"} and len(items) == 2
    with pytest.raises(ValueError, match="unknown split"):
        get_dataset("mosei").utterances(tmp_path, splits=["dev"])


def test_string_clip_ids_sort_as_strings(tmp_path: Path) -> None:
    rows = [["v", clip, clip, "0", "", "", "", "Neutral", "train"] for clip in ("b", "10", "a")]
    items = get_dataset("mosei").utterances(write_mosei(tmp_path, rows))
    assert [u.id for u in items] == ["v$_$10", "v$_$a", "v$_$b"]


def test_root_error_names_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetRootError) as caught:
        get_dataset("mosei").utterances(tmp_path)
    message = str(caught.value)
    assert "label.csv" in message and "Raw/<video_id>/<clip_id>.mp4" in message
    assert "Missing: label.csv, Raw/" in message and "MMSA" in message


def test_missing_columns_are_named(tmp_path: Path) -> None:
    columns = ["video_id", "clip_id", "text", "label", "mode"]
    root = write_mosei(tmp_path, [["v", "0", "t", "0", "train"]], columns)
    with pytest.raises(AnnotationError, match="label_T"):
        get_dataset("mosei").utterances(root)


def test_unreadable_csv_names_file_and_line(tmp_path: Path) -> None:
    text = "x" * 200_000  # longer than the csv module's field limit
    rows = [["v", "0", text, "0.5", "", "", "", "Neutral", "train"]]
    with pytest.raises(AnnotationError, match=r"label.csv near line 2: not readable as CSV"):
        get_dataset("mosei").utterances(write_mosei(tmp_path, rows))


@pytest.mark.parametrize("video_id, clip_id", [("../../etc", "passwd"), ("188343", "../../x"), ("..", "1"),
                                               ("/etc", "hostname"), ("a\\b", "1")])
def test_ids_that_are_paths_are_skipped_not_joined_to_media(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             video_id: str, clip_id: str) -> None:
    rows = [ROWS[0], [video_id, clip_id, "x", "0.5", "", "", "", "Positive", "train"]]
    with caplog.at_level(logging.WARNING):
        items = get_dataset("mosei").utterances(write_mosei(tmp_path, rows))
    assert [u.id for u in items] == ["188343$_$10"]
    assert any("label.csv line 3" in r.getMessage() and "is a path, not a name" in r.getMessage()
               for r in caplog.records)
