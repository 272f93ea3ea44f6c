"""Every adapter on the synthetic corpora of ``make_sample`` with faults: each fault is listed
by the adapter and surfaces with its reason only at decode time (or as an empty text)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hcm.pipeline.datasets import Utterance, get_dataset
from hcm.pipeline.datasets.iemocap import IEMOCAP_CODES, read_evaluation
from hcm.pipeline.media import MediaError, MediaRef, read_audio, read_frames
from hcm.pipeline.sample import SampleSummary, available_samples, get_sample, make_sample

DATASETS = ["mosei", "meld", "iemocap"]

MEDIA_FAULTS = {  # fault kind -> (which reader, reason the manifest should record)
    "missing_clip": ("any", "file missing: "),
    "missing_wav": ("audio", "file missing: "),
    "no_audio": ("audio", "no audio stream"),
    "truncated_media": ("any", "cannot decode: "),
}
TEXT_FAULTS = {"empty_text", "missing_transcription"}


@pytest.fixture(scope="module", params=DATASETS)
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SampleSummary:
    name = request.param
    root = tmp_path_factory.mktemp(f"sample-{name}")
    n = max(get_sample(name).min_n, 12)  # enough utterances for every fault to hit its own
    return make_sample(name, root, n=n, seed=0, faults=True, progress=False)


def test_every_corpus_checked_here_is_registered() -> None:
    assert set(DATASETS) <= set(available_samples()), f"sample corpora gone: {set(DATASETS) - set(available_samples())}"


def _decode(ref: MediaRef, reader: str) -> None:
    if reader == "audio":
        read_audio(ref, 16000)
    else:
        read_frames(ref, 4)


def _faulty_refs(item: Utterance, root: Path, relative: str) -> list[tuple[str, MediaRef]]:
    refs = [("audio", item.audio), ("video", item.video)]
    return [(kind, ref) for kind, ref in refs if ref is not None and ref.path == root / relative]


def _excluded_iemocap_turn(corpus: SampleSummary, turn: str) -> bool:
    """Whether ``turn`` is an IEMOCAP turn annotated with a label outside the 6 classes."""
    if corpus.dataset != "iemocap":
        return False
    dialog = turn.rsplit("_", 1)[0]
    path = corpus.root / f"Session{int(turn[3:5])}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
    label = read_evaluation(path).get(turn)
    return label is not None and label.emotion not in IEMOCAP_CODES


def test_every_fault_is_listed_and_fails_at_decode_time(corpus: SampleSummary) -> None:
    items = get_dataset(corpus.dataset).utterances(corpus.root)
    by_id: dict[str, list[Utterance]] = {}
    for item in items:
        by_id.setdefault(item.id, []).append(item)
    assert corpus.faults, "make_sample(faults=True) wrote no faults"
    for fault in corpus.faults:
        candidates = by_id.get(fault.item, [])
        if not candidates and _excluded_iemocap_turn(corpus, fault.item):
            continue  # a fault on a turn whose label (fea, oth, ...) hcm leaves out
        assert candidates, f"{fault} is not listed by the adapter"
        if fault.kind in TEXT_FAULTS:
            assert any(item.text == "" for item in candidates), str(fault)
            continue
        reader, reason = MEDIA_FAULTS[fault.kind]
        refs = [r for item in candidates for r in _faulty_refs(item, corpus.root, fault.path)]
        assert refs, f"{fault}: no media reference points at {fault.path}"
        for kind, ref in refs:
            with pytest.raises(MediaError) as caught:
                _decode(ref, kind if reader == "any" else reader)
            assert caught.value.reason.startswith(reason), f"{fault}: {caught.value.reason}"


def test_split_sizes_match_what_was_generated(corpus: SampleSummary) -> None:
    items = get_dataset(corpus.dataset).utterances(corpus.root)
    assert {u.split for u in items} == {"train", "valid", "test"}
    if corpus.dataset != "iemocap":  # IEMOCAP counts are per session, labels include excluded ones
        assert Counter(u.split for u in items) == Counter(corpus.counts)
    else:
        assert {u.id[:5] for u in items if u.split == "test"} == {"Ses05"}


def test_a_healthy_clip_decodes(corpus: SampleSummary) -> None:
    items = get_dataset(corpus.dataset).utterances(corpus.root)
    broken = {fault.item for fault in corpus.faults}
    item = next(u for u in items if u.id not in broken)
    frames = read_frames(item.video, 3)
    assert frames.ndim == 4 and frames.shape[0] == 3 and frames.shape[-1] == 3
    assert read_audio(item.audio, 16000).size > 0
