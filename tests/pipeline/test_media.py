"""Decoding of clips written here with PyAV: shapes, timing, windows and every failure reason."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from hcm.pipeline.media import (
    MediaError,
    MediaRef,
    frame_targets,
    probe,
    read_audio,
    read_audio_rates,
    read_frames,
    segment_bounds,
    split_segments,
)

FPS = 10
SIZE = (32, 24)  # (W, H)
RATE = 16000


def _frame_level(index: int) -> int:
    """Grey level of frame ``index`` in the written clips: 0, 8, 16, ... (wraps at 256)."""
    return (index * 8) % 256


def write_clip(
    path: Path, seconds: float, video: bool = True, audio: bool = True, codec: str = "libx264"
) -> Path:
    """A tiny clip: uniformly grey frames getting brighter, and a 440 Hz tone at half scale."""
    with av.open(str(path), "w") as out:
        vstream = out.add_stream(codec, rate=FPS) if video else None
        astream = None
        if vstream is not None:
            vstream.width, vstream.height = SIZE
            vstream.pix_fmt = "yuv420p"
        if audio:
            astream = out.add_stream("pcm_s16le" if path.suffix == ".wav" else "aac", rate=RATE)
            astream.layout = "mono"
        if vstream is not None:
            for index in range(int(seconds * FPS)):
                image = np.full((SIZE[1], SIZE[0], 3), _frame_level(index), np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode())
        if astream is not None:
            _write_tone(out, astream, seconds)
    return path


def _write_tone(
    out: av.container.OutputContainer, stream: av.stream.Stream, seconds: float
) -> None:
    samples = int(seconds * RATE)
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(samples) / RATE)).astype(np.float32)
    for offset in range(0, samples, 1024):
        chunk = wave[None, offset:offset + 1024]  # (1, n)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = RATE
        frame.pts = offset
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    mp4 = write_clip(folder / "clip.mp4", 2.0)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 16)
    return {
        "mp4": mp4,
        "avi": write_clip(folder / "dialog.avi", 8.0, audio=False, codec="mpeg4"),
        "wav": write_clip(folder / "turn.wav", 1.5, video=False),
        "silent": write_clip(folder / "silent.mp4", 1.0, audio=False),
        "truncated": truncated,
        "empty": empty,
        "garbage": garbage,
        "missing": folder / "missing.mp4",
    }


def test_probe_reads_streams_and_duration(clips: dict[str, Path]) -> None:
    info = probe(clips["mp4"])
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height, info.fps, info.sample_rate) == (32, 24, 10.0, RATE)
    wav = probe(clips["wav"])
    assert not wav.has_video and wav.has_audio and wav.width is None
    assert wav.duration == pytest.approx(1.5, abs=0.01)


def test_read_frames_shape_dtype_and_uniform_timestamps(clips: dict[str, Path]) -> None:
    frames = read_frames(MediaRef(clips["mp4"]), 8)
    assert frames.shape == (8, 24, 32, 3) and frames.dtype == np.uint8
    # bins of 0.25 s, midpoints 0.125, 0.375, ... -> frames 1, 3, 6, 8, 11, 13, 16, 18 at 10 fps
    expected = [_frame_level(i) for i in (1, 3, 6, 8, 11, 13, 16, 18)]
    np.testing.assert_allclose(frames[:, 12, 16, 0], expected, atol=6)


def test_read_frames_repeats_frames_of_short_clips(clips: dict[str, Path]) -> None:
    frames = read_frames(MediaRef(clips["silent"]), 25)  # 10 frames, 25 requested
    assert frames.shape == (25, 24, 32, 3)
    # bin midpoints (k + 0.5) / 25 s; each shows the frame on screen then: floor(t * 10)
    shown = np.floor((np.arange(25) + 0.5) / 25 * FPS).astype(int)
    np.testing.assert_allclose(frames[:, 12, 16, 0], [_frame_level(i) for i in shown], atol=6)


def test_read_frames_cuts_a_window_of_a_long_avi(clips: dict[str, Path]) -> None:
    frames = read_frames(MediaRef(clips["avi"], 5.0, 6.0), 5)
    # midpoints 5.1, 5.3, ..., 5.9 s -> frames 51, 53, 55, 57, 59
    expected = [_frame_level(i) for i in (51, 53, 55, 57, 59)]
    np.testing.assert_allclose(frames[:, 12, 16, 0], expected, atol=6)


def test_read_frames_clamps_a_window_past_the_end(clips: dict[str, Path]) -> None:
    frames = read_frames(MediaRef(clips["avi"], 7.5, 9.5), 4)
    assert frames.shape == (4, 24, 32, 3)
    with pytest.raises(MediaError) as caught:
        read_frames(MediaRef(clips["avi"], 9.0, 10.0), 4)
    assert caught.value.reason == "zero-length clip"


def test_decoding_is_deterministic(clips: dict[str, Path]) -> None:
    ref = MediaRef(clips["avi"], 1.3, 4.1)
    np.testing.assert_array_equal(read_frames(ref, 6), read_frames(ref, 6))
    wave_ref = MediaRef(clips["mp4"], 0.2, 1.1)
    np.testing.assert_array_equal(read_audio(wave_ref, 22050), read_audio(wave_ref, 22050))


def test_read_audio_resamples_to_mono_float(clips: dict[str, Path]) -> None:
    wave = read_audio(MediaRef(clips["mp4"]), 44100)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.shape[0] == pytest.approx(2.0 * 44100, abs=0.01 * 44100)
    assert -1.0 <= wave.min() and wave.max() <= 1.0
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.05)
    # the tone is still 440 Hz after resampling
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.fft.rfftfreq(wave.size, 1 / 44100)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_a_forked_worker_decodes_after_its_parent_did(clips: dict[str, Path]) -> None:
    """The frame converter is per process: a child that used its parent's hung (FFmpeg threads)."""
    ref = MediaRef(clips["mp4"])
    here = read_frames(ref, 3)  # the parent now holds a converter
    with multiprocessing.get_context("fork").Pool(1) as pool:
        there = pool.apply_async(read_frames, (ref, 3)).get(timeout=60)
    np.testing.assert_array_equal(here, there)


def test_one_decode_serves_several_rates(clips: dict[str, Path]) -> None:
    ref = MediaRef(clips["mp4"], 0.25, 1.5)
    waves = read_audio_rates(ref, (16000, 44100, 16000))
    assert sorted(waves) == [16000, 44100]
    for rate, wave in waves.items():
        np.testing.assert_array_equal(wave, read_audio(ref, rate))


def test_read_audio_cuts_the_window(clips: dict[str, Path]) -> None:
    assert read_audio(MediaRef(clips["wav"], 0.5, 1.25), 8000).shape == (6000,)
    cut = read_audio(MediaRef(clips["mp4"], 0.25, 1.0), RATE)
    assert cut.shape[0] == pytest.approx(12000, abs=2)
    whole = read_audio(MediaRef(clips["wav"]), RATE)
    assert whole.shape == (24000,)
    part = read_audio(MediaRef(clips["wav"], 0.5, 1.0), RATE)
    np.testing.assert_allclose(part, whole[8000:16000], atol=1e-4)


@pytest.mark.parametrize(
    ("name", "reader", "reason"),
    [
        ("silent", "audio", "no audio stream"),
        ("wav", "frames", "no video stream"),
        ("missing", "frames", "file missing: "),
        ("missing", "audio", "file missing: "),
        ("empty", "frames", "zero-length clip"),
        ("empty", "audio", "zero-length clip"),
        ("truncated", "frames", "cannot decode: "),
        ("garbage", "audio", "cannot decode: "),
    ],
)
def test_every_failure_has_a_reason(
    clips: dict[str, Path], name: str, reader: str, reason: str
) -> None:
    ref = MediaRef(clips[name])
    with pytest.raises(MediaError) as caught:
        read_frames(ref, 4) if reader == "frames" else read_audio(ref, RATE)
    assert caught.value.reason.startswith(reason)
    assert str(clips[name]) in str(caught.value)


def test_worker_processes_decode_the_same_arrays(clips: dict[str, Path]) -> None:
    refs = [MediaRef(clips["avi"], 2.0, 3.5), MediaRef(clips["mp4"]), MediaRef(clips["missing"])]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(read_frames, ref, 4) for ref in refs]
        np.testing.assert_array_equal(futures[0].result(), read_frames(refs[0], 4))
        np.testing.assert_array_equal(futures[1].result(), read_frames(refs[1], 4))
        with pytest.raises(MediaError) as caught:
            futures[2].result()
    assert caught.value.reason.startswith("file missing: ")


def test_media_error_survives_pickling(clips: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as caught:
        read_audio(MediaRef(clips["silent"], 0.0, 0.5), RATE)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.reason == "no audio stream" and copy.ref == MediaRef(clips["silent"], 0.0, 0.5)
    assert str(copy) == str(caught.value)


def test_zero_length_window(clips: dict[str, Path]) -> None:
    for read in (lambda ref: read_frames(ref, 4), lambda ref: read_audio(ref, RATE)):
        with pytest.raises(MediaError, match="zero-length clip"):
            read(MediaRef(clips["mp4"], 1.0, 1.0))


def test_probe_failures(clips: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="file missing"):
        probe(clips["missing"])
    with pytest.raises(MediaError, match="cannot decode"):
        probe(clips["truncated"])


def test_frame_targets_are_bin_midpoints() -> None:
    np.testing.assert_allclose(frame_targets(2.0, 4.0, 4), [2.25, 2.75, 3.25, 3.75])


def test_split_segments_overlap_and_cover_the_clip() -> None:
    wave = np.arange(10 * 100, dtype=np.float32)  # 10 s at 100 Hz
    segments = split_segments(wave, 100, n_segments=19, segment_seconds=1.0)
    assert segments.shape == (19, 100) and segments.dtype == np.float32
    assert segments[0, 0] == 0 and segments[-1, -1] == wave[-1]
    np.testing.assert_array_equal(segments[1], wave[50:150])  # hop of half a segment


def test_split_segments_pads_short_clips() -> None:
    wave = np.ones(30, dtype=np.float32)
    segments = split_segments(wave, 100, n_segments=3, segment_seconds=0.5)
    assert segments.shape == (3, 50)
    np.testing.assert_array_equal(segments[:, :30], 1.0)
    np.testing.assert_array_equal(segments[:, 30:], 0.0)


@pytest.mark.parametrize("seconds", [0.3, 3.0, 8.0, 40.0])
def test_segments_cover_every_clip_length_with_overlap(seconds: float) -> None:
    """S segments for every length; every sample in some segment; each neighbour pair overlaps."""
    rate, n_segments = 1000, 8
    n = int(seconds * rate)
    wave = np.arange(1, n + 1, dtype=np.float32)  # sample k holds k + 1; padding holds 0
    segments = split_segments(wave, rate, n_segments, segment_seconds=1.0)
    starts, length = segment_bounds(n, rate, n_segments, 1.0)
    assert segments.shape == (n_segments, length) and starts.shape == (n_segments,)
    assert length == max(1000, -(-2 * max(n, 1000) // 9))
    assert starts[0] == 0 and starts[-1] + length == max(n, 1000)  # first and last sample
    assert set(np.unique(segments[segments > 0]).astype(int)) == set(range(1, n + 1))  # full coverage
    ends = starts + length
    assert (starts[1:] < ends[:-1]).all()  # neighbours overlap
    assert (ends[:-1] - starts[1:] >= length // 2 - 1).all()  # by at least half a segment
    for start, segment in zip(starts, segments):
        expected = np.pad(wave, (0, max(length - n, 0)))[start:start + length]
        np.testing.assert_array_equal(segment, expected)


def test_segment_boundaries_of_short_and_long_clips() -> None:
    """The rule's numbers: 0.3 s is padded to one window; 8 s and 40 s get hop = L / 2."""
    starts, length = segment_bounds(300, 1000, 8, 1.0)
    assert length == 1000 and starts.tolist() == [0] * 8
    starts, length = segment_bounds(8000, 1000, 8, 1.0)
    assert length == 1778 and starts[:3].tolist() == [0, 889, 1778] and starts[-1] == 8000 - 1778
    starts, length = segment_bounds(40000, 1000, 8, 1.0)
    assert length == 8889 and starts[:3].tolist() == [0, 4444, 8889] and starts[-1] == 40000 - 8889
    starts, length = segment_bounds(2500, 1000, 8, 1.0)  # up to 4.5 windows: one window, hop < L / 2
    assert length == 1000 and np.diff(starts).max() <= 215
    starts, length = segment_bounds(5000, 1000, 1, 1.0)  # one segment is the whole clip
    assert length == 5000 and starts.tolist() == [0]


def test_split_segments_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty wave"):
        split_segments(np.zeros(0, np.float32), 100, 2, 1.0)
    with pytest.raises(ValueError, match="n_segments"):
        split_segments(np.zeros(10, np.float32), 100, 0, 1.0)
