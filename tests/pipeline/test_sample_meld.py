"""The MELD sample: the three CSVs' exact columns, times, text quirks, dialogues and clip lengths."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import av
import pytest

from hcm.pipeline.sample import make_sample
from hcm.pipeline.sample.meld import COLUMNS, EMOTIONS

FILES = {"train_sent_emo.csv": "train_splits", "dev_sent_emo.csv": "dev_splits_complete",
         "test_sent_emo.csv": "output_repeated_splits_test"}
TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2}),(\d{3})$")


@pytest.fixture(scope="module")
def meld(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    root = tmp_path_factory.mktemp("meld") / "sample-meld"
    make_sample("meld", root, n=60, seed=0, progress=False)
    tables = {}
    for name in FILES:
        with (root / name).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames) == COLUMNS, name
            tables[name] = list(reader)
    return root, tables


def _seconds(stamp: str) -> float:
    hours, minutes, seconds, millis = (int(g) for g in TIME.match(stamp).groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def test_rows_have_valid_labels_and_times(meld):
    _, tables = meld
    rows = [r for table in tables.values() for r in table]
    assert {r["Emotion"] for r in rows} <= set(EMOTIONS)
    for r in rows:
        assert TIME.match(r["StartTime"]) and TIME.match(r["EndTime"]), r
        assert 2.0 <= _seconds(r["EndTime"]) - _seconds(r["StartTime"]) <= 4.0
        expected = {"joy": {"positive"}, "neutral": {"neutral"},
                    "surprise": {"positive", "negative"}}.get(r["Emotion"], {"negative"})
        assert r["Sentiment"] in expected, r
    assert any(r["StartTime"].startswith("0:") for r in rows)  # one-digit hours
    assert any(r["StartTime"].startswith("00:") for r in rows)
    for table in tables.values():
        assert [int(r["Sr No."]) for r in table] == list(range(1, len(table) + 1))
        assert set(EMOTIONS) <= {r["Emotion"] for r in table}


def test_text_has_curly_apostrophes_and_mojibake(meld):
    _, tables = meld
    texts = [r["Utterance"] for table in tables.values() for r in table]
    assert any("’" in t for t in texts)
    assert any("â€™" in t or "â€¦" in t for t in texts)


def test_dialogues_have_several_ordered_utterances(meld):
    _, tables = meld
    for table in tables.values():
        dialogues: dict[str, list[dict]] = {}
        for r in table:
            dialogues.setdefault(r["Dialogue_ID"], []).append(r)
        assert min(len(d) for d in dialogues.values()) >= 2
        for rows in dialogues.values():
            assert [int(r["Utterance_ID"]) for r in rows] == list(range(len(rows)))
            starts = [_seconds(r["StartTime"]) for r in rows]
            assert starts == sorted(starts)


def test_each_clip_lasts_its_annotated_time(meld):
    root, tables = meld
    for name, folder in FILES.items():
        for r in tables[name]:
            path = root / folder / f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}.mp4"
            expected = _seconds(r["EndTime"]) - _seconds(r["StartTime"])
            with av.open(str(path)) as container:
                frames = sum(1 for _ in container.decode(video=0))
            with av.open(str(path)) as container:
                samples = sum(f.samples for f in container.decode(audio=0))
            assert abs(frames / 10 - expected) <= 0.051, path
            assert 0 <= samples / 16000 - expected < 0.07, path
