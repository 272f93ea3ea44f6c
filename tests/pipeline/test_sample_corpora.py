"""Every registered sample corpus: media decode as promised, seeds reproduce, faults are real."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from hcm.pipeline.sample import available_samples, get_sample, make_sample
from hcm.pipeline.sample.registry import (
    EMPTY_TEXT,
    MARKER,
    MISSING_CLIP,
    MISSING_TRANSCRIPTION,
    MISSING_WAV,
    NO_AUDIO,
    TRUNCATED_MEDIA,
)

SMALL_N = {"mosei": 14, "meld": 12, "iemocap": 12, "mosi": 12, "sims": 12, "simsv2": 12, "custom": 16}
MEDIA_SUFFIXES = (".mp4", ".avi", ".wav")
ANNOTATION_SUFFIXES = (".csv", ".txt")


def test_every_registered_corpus_has_a_size_here() -> None:
    """Unregistering a sample corpus (or adding one without a size here) fails this module."""
    assert set(SMALL_N) == set(available_samples())


def _files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in suffixes)


def _decode(path: Path) -> dict:
    """Streams, frames and samples of one media file."""
    if path.suffix == ".wav":
        samples, rate = soundfile.read(str(path), dtype="float32")
        info = soundfile.info(str(path))
        return {"audio_codec": info.subtype, "rate": rate, "channels": info.channels,
                "samples": samples, "frames": None}
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        result = {"video_codec": video.codec_context.name, "fps": float(video.average_rate),
                  "size": (video.codec_context.height, video.codec_context.width)}
        result["frames"] = np.stack([f.to_ndarray(format="rgb24")
                                     for f in container.decode(video=0)])  # (T, H, W, 3)
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = container.streams.audio[0]
            result.update(audio_codec=audio.codec_context.name, rate=audio.rate,
                          channels=audio.codec_context.channels)
            result["samples"] = np.concatenate(
                [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return result


@pytest.fixture(scope="module", params=available_samples())
def corpus(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    root = tmp_path_factory.mktemp(name) / "corpus"
    make_sample(name, root, n=SMALL_N[name], seed=3, progress=False)
    return name, root


def test_every_media_file_decodes_with_the_promised_format(corpus):
    name, root = corpus
    media = _files(root, MEDIA_SUFFIXES)
    assert media, f"{name}: no media written"
    for path in media:
        info = _decode(path)
        if path.suffix == ".wav":
            assert (info["audio_codec"], info["rate"], info["channels"]) == ("PCM_16", 16000, 1)
            assert 2.0 <= len(info["samples"]) / 16000 <= 4.0
            continue
        expected = {".mp4": ("h264", "aac"), ".avi": ("mpeg4", "pcm_s16le")}[path.suffix]
        assert (info["video_codec"], info["audio_codec"]) == expected, path
        assert info["fps"] == 10 and info["size"] == (96, 96), path
        assert (info["rate"], info["channels"]) == (16000, 1), path
        video_seconds = len(info["frames"]) / info["fps"]
        audio_seconds = len(info["samples"]) / info["rate"]
        # AAC pads the last frame (< 0.064 s at 16 kHz); video rounds to whole frames (0.05 s).
        assert -0.06 < audio_seconds - video_seconds < 0.12, path
        if path.suffix == ".mp4":
            assert 1.95 <= video_seconds <= 4.05, path


def test_same_seed_gives_identical_annotations_and_media(corpus, tmp_path):
    name, root = corpus
    again = tmp_path / "again"
    make_sample(name, again, n=SMALL_N[name], seed=3, progress=False)
    first = _files(root, ANNOTATION_SUFFIXES + MEDIA_SUFFIXES)
    second = _files(again, ANNOTATION_SUFFIXES + MEDIA_SUFFIXES)
    assert [p.relative_to(root) for p in first] == [p.relative_to(again) for p in second]
    for a, b in zip(first, second):
        if a.suffix in ANNOTATION_SUFFIXES:
            assert a.read_bytes() == b.read_bytes(), a
        else:
            left, right = _decode(a), _decode(b)
            assert np.array_equal(left["samples"], right["samples"]), a
            if left["frames"] is not None:
                assert np.array_equal(left["frames"], right["frames"]), a


def test_another_seed_gives_another_corpus(corpus, tmp_path):
    name, root = corpus
    other = tmp_path / "other"
    make_sample(name, other, n=SMALL_N[name], seed=4, progress=False)
    texts = lambda r: [p.read_bytes() for p in _files(r, ANNOTATION_SUFFIXES)]  # noqa: E731
    assert texts(root) != texts(other)


@pytest.mark.parametrize("name", available_samples())
def test_faults_are_recorded_and_present_on_disk(name, tmp_path):
    summary = make_sample(name, tmp_path / name, n=SMALL_N[name], seed=1, faults=True,
                          progress=False)
    kinds = {fault.kind for fault in summary.faults}
    expected = {MISSING_CLIP, NO_AUDIO, TRUNCATED_MEDIA, EMPTY_TEXT}
    if name == "iemocap":
        expected = {MISSING_WAV, MISSING_TRANSCRIPTION, TRUNCATED_MEDIA, EMPTY_TEXT}
    assert kinds == expected
    assert len({(f.split, f.item) for f in summary.faults}) == len(summary.faults)
    for fault in summary.faults:
        _assert_fault_on_disk(summary.root, fault)


def _assert_fault_on_disk(root: Path, fault) -> None:
    path = root / fault.path
    if fault.kind in (MISSING_CLIP, MISSING_WAV):
        assert not path.exists(), fault
    elif fault.kind == NO_AUDIO:
        with av.open(str(path)) as container:
            assert container.streams.video and not container.streams.audio, fault
    elif fault.kind == TRUNCATED_MEDIA:
        if path.suffix == ".wav":  # libsndfile refuses to open the cut RIFF file
            with pytest.raises(soundfile.LibsndfileError, match=f"Error opening {re.escape(repr(str(path)))}"):
                _decode(path)
        else:  # FFmpeg finds no decodable stream in the cut container
            with pytest.raises(av.error.InvalidDataError, match="Invalid data found when processing input"):
                _decode(path)
    elif fault.kind == MISSING_TRANSCRIPTION:
        assert fault.item not in path.read_text(encoding="utf-8"), fault
    elif fault.kind == EMPTY_TEXT:
        assert _transcript(path, fault.item) == "", fault
    else:
        pytest.fail(f"unexpected fault kind {fault.kind}")


def _transcript(path: Path, item: str) -> str:
    """The text of utterance ``item`` in a label CSV or an IEMOCAP transcription file."""
    if path.suffix == ".txt":
        lines = [line for line in path.read_text(encoding="utf-8").splitlines()
                 if line.startswith(item + " [")]
        assert len(lines) == 1, item
        return lines[0].split("]: ", 1)[1].strip()
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if "clip_id" in rows[0]:
        texts = [r["text"] for r in rows if f"{r['video_id']}$_${r['clip_id']}" == item]
    else:
        split_name = path.name.split("_")[0]  # train_sent_emo.csv -> train
        texts = [r["Utterance"] for r in rows
                 if f"{split_name}_dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}" == item]
    assert len(texts) == 1, item
    return texts[0]


@pytest.mark.parametrize("name", available_samples())
def test_without_faults_nothing_is_missing(name, tmp_path):
    summary = make_sample(name, tmp_path / name, n=SMALL_N[name], seed=1, progress=False)
    assert summary.faults == []
    for path in _files(summary.root, (".mp4", ".wav", ".avi")):
        assert path.stat().st_size > 1000, path


@pytest.mark.parametrize("name", available_samples())
def test_too_small_n_is_refused_with_the_minimum(name, tmp_path):
    minimum = get_sample(name).min_n
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        make_sample(name, tmp_path / "x", n=minimum - 1, progress=False)


def test_foreign_non_empty_folder_is_refused_and_earlier_sample_replaced(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        make_sample("mosei", foreign, n=6, progress=False)
    assert (foreign / "thesis.tex").read_text() == "keep me"

    target = tmp_path / "sample"
    make_sample("mosei", target, n=6, faults=True, progress=False)
    summary = make_sample("mosei", target, n=6, faults=False, progress=False)
    assert (target / MARKER).is_file() and summary.faults == []
    assert len(_files(target, (".mp4",))) == 6  # the earlier run's missing clip is back


def test_unknown_dataset_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="mosei"):
        make_sample("cmu-mosi", tmp_path / "x")


@pytest.mark.parametrize(("total", "parts", "low", "high"), [(288, 64, 3, 6), (300, 67, 3, 6), (80, 10, 6, 10),
                                                             (50, 50, 3, 9), (7, 2, 3, 6)])
def test_split_sizes_spread_the_rounding_remainder(total: int, parts: int, low: int, high: int) -> None:
    from hcm.pipeline.sample.common import split_sizes

    for seed in range(5):
        sizes = split_sizes(total, parts, np.random.default_rng(seed), low, high)
        assert len(sizes) == parts and sum(sizes) == total and min(sizes) >= 1
        # a scaled draw is at most high * total / (low * parts); the remainder adds at most one
        # item to a part (it once all went to one part: a 61-clip video in the quickstart corpus)
        assert max(sizes) <= high * total // (low * parts) + 1, sizes


@pytest.mark.parametrize("name", available_samples())
def test_every_split_has_an_item_at_the_smallest_n(name, tmp_path):
    from hcm.pipeline.datasets import get_dataset

    summary = make_sample(name, tmp_path / name, n=get_sample(name).min_n, seed=0, progress=False)
    items = get_dataset(name).utterances(summary.root)
    assert {u.split for u in items if u.dropped is None} == {"train", "valid", "test"}


def test_every_iemocap_dialogue_keeps_a_labelled_turn():
    from hcm.pipeline.sample.common import corpus_rng
    from hcm.pipeline.sample.iemocap import CLASSES, _plan_dialogues

    for seed in range(20):
        for dialogue in _plan_dialogues(get_sample("iemocap").min_n, corpus_rng(seed, "iemocap")):
            assert any(turn.label in CLASSES for turn in dialogue.turns), (seed, dialogue.name)
