"""The MOSEI sample: MMSA label.csv format, string ids, label grid, and the label in each modality."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from hcm.pipeline.sample import make_sample
from hcm.pipeline.sample.content import SENTIMENT_LEXICON
from hcm.pipeline.sample.mosei import COLUMNS, SPECIAL_VIDEO_IDS

WORD_SCORE = {word: score for score, words in SENTIMENT_LEXICON.items() for word in words}


@pytest.fixture(scope="module")
def mosei(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("mosei") / "sample-mosei"
    make_sample("mosei", root, n=48, seed=0, progress=False)
    with (root / "label.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return root, list(reader)


def test_rows_follow_the_mmsa_format(mosei):
    root, rows = mosei
    assert len(rows) == 48
    assert {r["mode"] for r in rows} == {"train", "valid", "test"}
    for r in rows:
        label = float(r["label"])
        assert -3.0 <= label <= 3.0 and abs(label * 3 - round(label * 3)) < 1e-3
        sign = "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"
        assert r["annotation"] == sign
        unimodal = [r["label_T"], r["label_A"], r["label_V"]]
        assert all(v == "" for v in unimodal) or all(-3 <= float(v) <= 3 for v in unimodal)
        assert (root / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4").is_file()
    assert any(r["label_T"] == "" for r in rows) and any(r["label_T"] != "" for r in rows)
    assert any(float(r["label"]) == 0.0 for r in rows)


def test_numeric_looking_ids_survive_as_strings(mosei):
    root, rows = mosei
    video_ids = {r["video_id"] for r in rows}
    assert set(SPECIAL_VIDEO_IDS) <= video_ids
    assert (root / "Raw" / "0188343").is_dir()  # the leading zero is kept on disk too
    assert any(v.startswith("-") for v in video_ids)
    long_video = [r["clip_id"] for r in rows if r["video_id"] == Counter(
        r["video_id"] for r in rows).most_common(1)[0][0]]
    assert "10" in long_video and "2" in long_video  # text order would put 10 before 2


def test_videos_hold_several_clips_in_one_split(mosei):
    _, rows = mosei
    per_video = Counter(r["video_id"] for r in rows)
    assert min(per_video.values()) >= 2 and len(per_video) >= 6
    for video in per_video:
        assert len({r["mode"] for r in rows if r["video_id"] == video}) == 1


def test_each_split_covers_both_signs(mosei):
    _, rows = mosei
    for mode in ("train", "valid", "test"):
        labels = [float(r["label"]) for r in rows if r["mode"] == mode]
        assert min(labels) < 0 < max(labels), mode


def _clip_statistics(path: Path) -> tuple[float, float]:
    """Mean brightness of the frames and the dominant audio frequency (Hz)."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    band = (freqs > 80) & (freqs < 400)
    return float(frames.max(axis=-1).mean()), float(freqs[band][np.argmax(spectrum[band])])


def test_each_modality_alone_carries_the_label(mosei):
    root, rows = mosei
    labels = np.array([float(r["label"]) for r in rows])
    text = np.array([np.mean([WORD_SCORE[w] for w in r["text"].replace(",", "").split()
                              if w in WORD_SCORE]) for r in rows])
    stats = np.array([_clip_statistics(root / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4")
                      for r in rows])
    brightness, pitch = stats[:, 0], np.log(stats[:, 1])
    for name, values in (("text", text), ("video", brightness), ("audio", pitch)):
        assert np.corrcoef(values, labels)[0, 1] > 0.4, name


@pytest.mark.parametrize("n", [6, 8, 10])
def test_small_corpora_still_have_every_split(n):
    from hcm.pipeline.datasets.splits import assign_by_group
    from hcm.pipeline.sample.mosei import SPLIT_SHARES, _video_sizes

    rng = np.random.default_rng(n)
    modes = assign_by_group(_video_sizes(n, rng), SPLIT_SHARES)
    assert set(modes) == {"train", "valid", "test"}, modes
