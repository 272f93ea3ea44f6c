"""What the audio streams of an extracted cache hold: Mel frames as a sequence, S covering segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcm.cache import FeatureCache
from hcm.pipeline.datasets import get_dataset
from hcm.pipeline.extract import extract
from hcm.pipeline.media import read_audio
from hcm.pipeline.sample import make_sample


def test_mel_is_stored_frame_by_frame_and_audio_has_s_rows(tmp_path: Path, one_thread: None) -> None:
    root = make_sample("mosei", tmp_path / "mosei", n=6, seed=1, progress=False).root
    extract("mosei", root, tmp_path / "cache", profile="tiny", frames=2, segments=3, workers=0, progress=False)
    clips = {u.id: u.audio for u in get_dataset("mosei").utterances(root)}
    frames = {}
    with FeatureCache(tmp_path / "cache", features=["mel", "esresnext"]) as cache:
        assert cache.specs["mel"].shape == (128,)
        for i in range(len(cache)):
            item = cache[i]
            samples = read_audio(clips[item.id], 16000).size
            frames[item.id] = item.features["mel"].shape[0]
            assert frames[item.id] == 1 + samples // 160  # one row per 10 ms hop: the time axis is kept
            assert item.features["esresnext"].shape[0] == 3  # S audio nodes whatever the length
            assert np.isfinite(item.features["mel"].astype(np.float32)).all()
    assert len(frames) == 6 and len(set(frames.values())) > 1  # clips of several lengths
