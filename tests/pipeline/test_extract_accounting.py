"""Every labelled row ends up in the cache, in its failures or with a masked modality; the summary adds up."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hcm.cache import FeatureCache, dropped_items, masked_items, verify_cache
from hcm.pipeline.extract import ExtractionError, ExtractSummary, extract
from hcm.pipeline.sample import make_sample

FAST = dict(profile="tiny", frames=2, segments=2, batch_size=4, shard_size=4, progress=False, workers=0)
EXTRA_ROWS = (  # rows hcm cannot extract, each with the reason it is dropped
    b"0188343,7,a fine film,great,,,,Positive,train\n",  # invalid label
    b"0188343,0,mediocre story,-1.0,,,,Negative,train\n",  # duplicate of line 2
    b"211875,9,some words,0.5,,,,Neutral,training\n",  # unknown split
    b",4,no video id,0.5,,,,Neutral,test\n",  # invalid id
    b"211875,8,,0.5,,,,Neutral,test\n",  # empty text and no clip: nothing usable
    b"4e2103,4,caf\xe9 au lait was nice,1.5,,,,Positive,test\n",  # invalid UTF-8, kept
)
EXPECTED_DROPS = {
    "0188343$_$7": ("invalid label", "train"),
    "0188343$_$0": ("duplicate row", "train"),
    "211875$_$9": ("unknown split", ""),
    "label.csv:13": ("invalid id", "test"),
    "211875$_$8": ("no usable modality", "test"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("accounting") / "mosei"
    make_sample("mosei", root, n=9, seed=3, faults=True, progress=False)
    rows = (root / "label.csv").read_bytes().splitlines(keepends=True)
    kept = [row for row in rows if not row.startswith(b"4e2103,4,")]  # re-added below with a bad byte
    (root / "label.csv").write_bytes(b"".join(kept) + b"".join(EXTRA_ROWS))
    assert len(kept) - 1 + len(EXTRA_ROWS) == 14
    return root


@pytest.fixture(scope="module")
def extracted(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ExtractSummary]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("accounting-cache") / "cache"
        summary = extract("mosei", corpus, out, **FAST)
    finally:
        torch.set_num_threads(before)
    yield out, summary


def test_every_row_is_extracted_dropped_or_masked(extracted: tuple[Path, ExtractSummary]) -> None:
    out, summary = extracted
    dropped = {entry["id"]: (entry["reason"], entry["split"]) for entry in dropped_items(out)}
    assert dropped == EXPECTED_DROPS
    with FeatureCache(out) as cache:
        ids = {cache[i].id for i in range(len(cache))}
    assert len(ids) == 9 and ids & set(dropped) == {"0188343$_$0"}  # the first of the duplicate rows is kept
    assert summary.planned == 14 == summary.extracted + len(summary.dropped) and summary.pending == 0
    masked = {(m["id"], m["modality"]) for m in masked_items(out)}
    assert {("211875$_$0", "video"), ("211875$_$0", "audio"), ("0188343$_$3", "text")} <= masked
    assert verify_cache(out) == []


def test_the_summary_adds_up_and_names_the_reasons(extracted: tuple[Path, ExtractSummary]) -> None:
    text = extracted[1].format()
    assert "plan 14 = 9 extracted + 5 dropped" in text
    for reason, _ in EXPECTED_DROPS.values():
        assert f"{reason} 1" in text
    assert "video / file missing 1" in text and "1 texts with invalid UTF-8 repaired" in text


def test_text_repair_is_noted_on_the_item(extracted: tuple[Path, ExtractSummary]) -> None:
    with FeatureCache(extracted[0]) as cache:
        item = next(cache[i] for i in range(len(cache)) if cache[i].id == "4e2103$_$4")
        clean = [cache[i].notes for i in range(len(cache)) if cache[i].id != "4e2103$_$4"]
    assert item.text == "caf\ufffd au lait was nice"
    assert item.notes["text_repair"] == "label.csv line 15: bytes that are not UTF-8 were replaced by U+FFFD"
    assert not any("text_repair" in notes for notes in clean)


def test_strict_stops_at_a_bad_label_row(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "mosei"
    shutil.copytree(corpus, root)
    rows = (root / "label.csv").read_bytes().splitlines(keepends=True)
    (root / "label.csv").write_bytes(rows[0] + rows[1] + EXTRA_ROWS[0] + rows[6])  # no media fault kept
    with pytest.raises(ExtractionError, match="--strict: 0188343\\$_\\$7: invalid label"):
        extract("mosei", root, tmp_path / "cache", strict=True, **FAST)
