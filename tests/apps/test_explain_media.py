"""`hcm explain` labels video and audio rows with when they happen and draws the sampled frames,
when the raw corpus a cache was read from (the manifest's ``source``) is still at hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hcm.apps.explain import safe_name
from hcm.cli import app
from hcm.pipeline.media import MediaRef, frame_targets, segment_bounds
from hcm.pipeline.profiles import Sampling
from hcm.pipeline.sample.media import write_mp4
from hcm.pipeline.sources import find_utterance, row_media

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_row_media_gives_each_frame_its_timestamp_and_each_segment_its_span(tmp_path: Path) -> None:
    rate, seconds, fps = 16000, 2.0, 10
    frames = np.zeros((int(seconds * fps), 96, 128, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(len(frames))[:, None, None] * 10  # red rises with time
    clip = tmp_path / "clip.mp4"
    write_mp4(clip, frames, fps, np.zeros(int(seconds * rate), np.float32), rate)
    sampling = Sampling(frames=4, segments=3, segment_seconds=0.5, audio_rate=rate)

    media = row_media(MediaRef(clip), MediaRef(clip), sampling, thumbnail_height=24)

    assert media is not None and media.duration == pytest.approx(seconds, abs=0.1)
    np.testing.assert_allclose(media.frame_times, frame_targets(0.0, seconds, 4), atol=0.06)
    n = round(media.duration * rate)
    starts, length = segment_bounds(n, rate, 3, 0.5)
    np.testing.assert_allclose(media.segment_times, [(s / rate, (s + length) / rate) for s in starts], atol=0.01)
    assert media.segment_times[0][0] == 0 and media.segment_times[-1][1] == pytest.approx(media.duration, abs=0.01)
    assert media.thumbnails.shape == (4, 24, 32, 3)
    reds = media.thumbnails[:, :, :, 0].mean(axis=(1, 2))
    assert (np.diff(reds) > 0).all()  # the thumbnails are the sampled frames, in time order
    assert json.loads(json.dumps(media.to_json()))["frame_times"] == media.frame_times


def test_row_media_of_a_missing_clip_is_none(tmp_path: Path) -> None:
    assert row_media(MediaRef(tmp_path / "gone.mp4"), None, Sampling()) is None


@pytest.mark.slow  # a sample corpus, a tiny extraction and one epoch of training
def test_explain_of_a_cached_item_shows_times_while_the_corpus_is_there(tmp_path: Path) -> None:
    work = tmp_path / "hcm-work"
    base = ["--workdir", str(work)]
    for args in (["sample", "--dataset", "mosei", "--n", "24", "--quiet"],
                 ["extract", "--dataset", "mosei", "--profile", "tiny", "--workers", "0", "--quiet"],
                 ["train", "--epochs", "1", "--batch-size", "8", "--set", "d_model=16", "--set", "num_heads=2",
                  "--set", "m_ctn=2", "--device", "cpu", "--quiet"]):
        result = runner.invoke(app, base + args)
        assert result.exit_code == 0, result.output
    cache = work / "features" / "mosei" / "tiny"
    manifest = json.loads((cache / "manifest.json").read_text())
    root = Path(manifest["source"]["data_root"])
    assert root == (work / "data" / "sample-mosei").resolve()
    item_id = _first_test_id(cache)
    utterance = find_utterance(cache, item_id)
    assert utterance is not None and utterance.video.path.is_file()

    result = runner.invoke(app, base + ["explain", "--ids", item_id, "--device", "cpu", "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "x" / f"{safe_name(item_id)}.json").read_text())
    assert len(doc["media"]["frame_times"]) == 4 and len(doc["media"]["segment_times"]) == 3
    rows = doc["plans"]["video"]["rows"]
    assert all(row.endswith("s") and "." in row for row in rows), rows  # "f0 0.4s" or "v0 ~0.0-0.6s"

    shutil.move(str(root), str(tmp_path / "moved"))  # the corpus is gone: rows by index, no failure
    find_utterance.__globals__["_utterances"].cache_clear()
    result = runner.invoke(app, base + ["explain", "--ids", item_id, "--device", "cpu", "--out", str(tmp_path / "y")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "y" / f"{safe_name(item_id)}.json").read_text())
    assert "media" not in doc and not any(row.endswith("s") for row in doc["plans"]["video"]["rows"])


def _first_test_id(cache: Path) -> str:
    from hcm.cache import FeatureCache

    with FeatureCache(cache, split="test", features=[]) as reader:
        return reader.ids[0]
