"""Media decoding for stage one: probe a clip, sample its frames, read its audio, cut segments.

Everything goes through PyAV (FFmpeg's libraries, bundled in the wheel): no ffmpeg binary is
called. A clip is a :class:`MediaRef`: a file, optionally restricted to a ``[start, end]``
window in seconds (IEMOCAP cuts utterances out of one video per dialogue).

Failures are raised as :class:`MediaError` whose ``reason`` is a short text the extraction
manifest records: ``file missing: <path>``, ``no video stream``, ``no audio stream``,
``cannot decode: <ffmpeg message>`` or ``zero-length clip``.

Sampling rules (deterministic for the same file and window):

- Frames: the window is cut into ``n_frames`` equal bins and each bin takes the frame on screen
  at its midpoint. A clip with fewer frames than ``n_frames`` therefore repeats frames; it is
  never padded with black frames.
- Audio: decoded, down-mixed to mono and resampled (FFmpeg's resampler), then cut to the window.
- Segments (the paper's "short and overlapping segments", the rows the audio encoder sees;
  under the model's ``paper`` reading the audio graph's nodes are these rows resampled onto
  the text's M nodes, docs/model.md): always
  ``S = n_segments`` segments of one length ``L = max(window, ceil(2 n / (S + 1)))`` samples
  (``window = segment_seconds``, ``n`` the clip's samples), starting at evenly spaced samples
  from 0 to ``n - L``. They cover the whole clip and neighbours overlap by at least half a
  segment (exactly half once the clip is longer than ``(S + 1) / 2`` windows). A clip shorter
  than one window is zero-padded at the end to one window first. See :func:`segment_bounds`.

The functions keep no state between calls except one RGB converter per process (see
``_rgb_reformatter``), so they are safe in worker processes, forked ones included.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

NO_VIDEO = "no video stream"
NO_AUDIO = "no audio stream"
ZERO_LENGTH = "zero-length clip"


@dataclass(frozen=True)
class MediaRef:
    """A media file, or the ``[start, end]`` window of it (seconds; ``None`` = file start / end)."""

    path: Path
    start: float | None = None
    end: float | None = None

    def describe(self) -> str:
        if self.start is None and self.end is None:
            return str(self.path)
        return f"{self.path} [{self.start}-{self.end}]"


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` finds in a file's header (``None`` where the container does not say)."""

    duration: float | None
    has_video: bool
    has_audio: bool
    fps: float | None
    sample_rate: int | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class ClipSampling:
    """Default sampling of one clip for the encoders (an extraction profile may override it).

    Attributes:
        n_frames: frames sampled uniformly per clip (the video rows the model encodes).
        n_segments: overlapping audio segments per clip (the audio rows the model encodes).
        segment_seconds: shortest audio segment (segments grow with the clip, see ``segment_bounds``).
    """

    n_frames: int = 16
    n_segments: int = 8
    segment_seconds: float = 1.0


class MediaError(Exception):
    """A clip that cannot be used; ``reason`` is the short text recorded in the manifest."""

    def __init__(self, reason: str, ref: MediaRef | Path | None = None) -> None:
        self.reason = reason
        self.ref = ref
        where = ref.describe() if isinstance(ref, MediaRef) else ref
        super().__init__(f"{where}: {reason}" if where is not None else reason)

    @property
    def kind(self) -> str:
        """The reason without its specifics: ``file missing``, ``cannot decode``, ``no video stream``, ..."""
        return self.reason.split(":", 1)[0]

    def __reduce__(self) -> tuple:
        # keep ``reason`` and ``ref`` when the error crosses a worker process boundary
        return (type(self), (self.reason, self.ref))


def _open(path: Path, ref: MediaRef | Path) -> av.container.InputContainer:
    """Open ``path`` for reading, mapping a missing, empty or unreadable file to MediaError."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"file missing: {path}", ref)
    if path.stat().st_size == 0:
        raise MediaError(ZERO_LENGTH, ref)
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise MediaError(f"cannot decode: {_ffmpeg_message(err)}", ref) from err


def _ffmpeg_message(err: Exception) -> str:
    """FFmpeg's own words for an error, without the file name PyAV appends."""
    strerror = getattr(err, "strerror", None)
    return str(strerror or err)


def probe(path: Path) -> MediaInfo:
    """Duration, streams, frame rate, sample rate and frame size of a media file."""
    with _open(path, Path(path)) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = None
        if container.duration is not None:
            duration = container.duration / av.time_base
        elif video is not None or audio is not None:
            try:
                duration = _stream_duration(container, video or audio)
            except av.FFmpegError as err:
                raise MediaError(f"cannot decode: {_ffmpeg_message(err)}", Path(path)) from err
        return MediaInfo(
            duration=duration,
            has_video=video is not None,
            has_audio=audio is not None,
            fps=float(video.average_rate) if video is not None and video.average_rate else None,
            sample_rate=audio.rate if audio is not None else None,
            width=video.width if video is not None else None,
            height=video.height if video is not None else None,
        )


def _stream_duration(
    container: av.container.InputContainer, stream: av.stream.Stream
) -> float | None:
    """The stream's duration from its header, else from the last packet (demuxed, not decoded)."""
    duration = _header_duration(stream)
    if duration is not None:
        return duration
    if container.duration is not None:
        return container.duration / av.time_base
    last = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            end = (packet.pts + (packet.duration or 0)) * packet.time_base
            last = end if last is None else max(last, end)
    container.seek(0)
    if last is None:
        return None
    return float(last) - _start_time(stream)


def _start_time(stream: av.stream.Stream) -> float:
    """The stream's first presentation time in seconds (0 when the header does not say)."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _window(ref: MediaRef, duration: float | None) -> tuple[float, float]:
    """The clip's ``[start, end]`` in seconds from the stream's start, clamped to the file."""
    start = max(ref.start or 0.0, 0.0)
    end = ref.end if ref.end is not None else duration
    if end is None:
        raise MediaError("cannot decode: the file does not state its duration", ref)
    if duration is not None:
        end = min(end, duration)
    if not end > start:
        raise MediaError(ZERO_LENGTH, ref)
    return start, end


def clip_window(ref: MediaRef) -> tuple[float, float]:
    """The ``[start, end]`` (seconds from the stream's start) that :func:`read_frames` samples."""
    with _open(ref.path, ref) as container:
        if not container.streams.video:
            raise MediaError(NO_VIDEO, ref)
        return _window(ref, _stream_duration(container, container.streams.video[0]))


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, seconds: float) -> None:
    """Seek to the key frame at or before ``seconds`` (stream-relative) when that skips data."""
    if seconds <= 0 or stream.time_base is None:
        return
    offset = int(math.floor((seconds + _start_time(stream)) / stream.time_base))
    container.seek(offset, stream=stream, backward=True, any_frame=False)


def _frame_time(frame: av.frame.Frame, offset: float, previous: float, fps: float) -> float:
    """A decoded frame's presentation time in seconds from the stream's start (at ``offset``).

    A frame without a timestamp is taken to follow the ``previous`` one by ``1 / fps``.
    """
    if frame.time is not None:
        return float(frame.time) - offset
    return previous + 1.0 / fps


def frame_targets(start: float, end: float, n_frames: int) -> np.ndarray:
    """Midpoints of ``n_frames`` equal bins of ``[start, end]``: the sampled timestamps."""
    step = (end - start) / n_frames
    return start + step * (np.arange(n_frames) + 0.5)  # (T,)


def read_frames(ref: MediaRef, n_frames: int) -> np.ndarray:
    """``n_frames`` RGB frames sampled uniformly over the clip: (T, H, W, 3) uint8.

    Each of ``n_frames`` equal bins of the window takes the frame on screen at its midpoint,
    so a clip with fewer frames than ``n_frames`` repeats frames. Decoding seeks to the
    window's start and stops after its last sampled timestamp.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    with _open(ref.path, ref) as container:
        if not container.streams.video:
            raise MediaError(NO_VIDEO, ref)
        stream = container.streams.video[0]
        try:
            start, end = _window(ref, _stream_duration(container, stream))
            targets = frame_targets(start, end, n_frames)
            _seek(container, stream, start)
            frames = _pick_frames(container, stream, start, targets, ref)
        except av.FFmpegError as err:
            raise MediaError(f"cannot decode: {_ffmpeg_message(err)}", ref) from err
    return np.stack(frames)  # (T, H, W, 3)


def _pick_frames(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    start: float,
    targets: np.ndarray,
    ref: MediaRef,
) -> list[np.ndarray]:
    """For each target time, the last decoded frame shown at or before it, as RGB arrays."""
    fps = float(stream.average_rate) if stream.average_rate else 25.0
    picked: list[np.ndarray] = []
    shown: av.VideoFrame | None = None  # the frame on screen before the current one
    shown_rgb: np.ndarray | None = None  # its RGB array, converted only once it is picked
    size: tuple[int, int] | None = None
    time = start - 1.0 / fps  # so that a first frame without timestamp is at the window start
    offset = _start_time(stream)
    for frame in container.decode(stream):
        time = _frame_time(frame, offset, time, fps)
        while shown is not None and len(picked) < len(targets) and targets[len(picked)] < time:
            if shown_rgb is None:
                shown_rgb = _to_rgb(shown, size)
            picked.append(shown_rgb)  # (H, W, 3)
        if len(picked) == len(targets):
            return picked
        size = size or (frame.width, frame.height)
        shown, shown_rgb = frame, None
    if shown is None:
        raise MediaError(ZERO_LENGTH, ref)
    last = shown_rgb if shown_rgb is not None else _to_rgb(shown, size)
    picked.extend([last] * (len(targets) - len(picked)))
    return picked


# One converter per process id. A forked child must neither use nor free its parent's: FFmpeg's
# scaler may keep threads, which do not survive a fork, and the extraction hung on them.
_REFORMATTERS: dict[int, av.video.reformatter.VideoReformatter] = {}


def _rgb_reformatter() -> av.video.reformatter.VideoReformatter:
    """This process's converter: it keeps FFmpeg's scaler context between frames and clips.

    ``VideoFrame.to_ndarray(format=...)`` sets up a new one for every frame, which cost about
    6x the conversion itself on the sample's 96x96 frames.
    """
    pid = os.getpid()
    if pid not in _REFORMATTERS:
        _REFORMATTERS[pid] = av.video.reformatter.VideoReformatter()
    return _REFORMATTERS[pid]


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``frame`` at ``size`` = (width, height)."""
    return _rgb_reformatter().reformat(frame, format="rgb24", width=size[0], height=size[1]).to_ndarray()


def read_audio(ref: MediaRef, sample_rate: int) -> np.ndarray:
    """The clip's sound as (n,) float32 mono in [-1, 1] at ``sample_rate`` Hz."""
    return read_audio_rates(ref, (sample_rate,))[sample_rate]


def read_audio_rates(ref: MediaRef, sample_rates: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The clip's sound at each of ``sample_rates``, decoded once: rate -> (n,) float32 mono.

    Every wave is what :func:`read_audio` gives for that rate alone.
    """
    if not sample_rates or min(sample_rates) < 1:
        raise ValueError(f"sample rates must be positive, got {sample_rates}")
    with _open(ref.path, ref) as container:
        if not container.streams.audio:
            raise MediaError(NO_AUDIO, ref)
        stream = container.streams.audio[0]
        if ref.end is not None and ref.start is not None and not ref.end > ref.start:
            raise MediaError(ZERO_LENGTH, ref)
        try:
            end = ref.end if ref.end is not None else _header_duration(stream)
            _seek(container, stream, ref.start or 0.0)
            waves, first_time = _decode_mono(container, stream, tuple(dict.fromkeys(sample_rates)), end)
        except av.FFmpegError as err:
            raise MediaError(f"cannot decode: {_ffmpeg_message(err)}", ref) from err
    out = {}
    for rate, wave in waves.items():
        wave = _cut(wave, first_time, rate, ref.start or 0.0, end)
        if wave.size == 0:
            raise MediaError(ZERO_LENGTH, ref)
        out[rate] = np.clip(wave, -1.0, 1.0)
    return out


def _decode_mono(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    sample_rates: tuple[int, ...],
    end: float | None,
) -> tuple[dict[int, np.ndarray], float]:
    """Decode from the current position up to ``end``: rate -> (n,) float32 mono, first sample's time.

    Frames are down-mixed at the stream's own rate; each other rate is then one resampling of
    the whole wave (per-frame calls into the resampler cost more than the resampling).
    """
    native = stream.rate or stream.codec_context.sample_rate
    mono = av.AudioResampler(format="flt", layout="mono", rate=native)
    chunks: list[np.ndarray] = []
    offset = _start_time(stream)
    first_time: float | None = None
    for frame in container.decode(stream):
        time = float(frame.time) - offset if frame.time is not None else None
        if first_time is None:
            first_time = time if time is not None else 0.0
        if end is not None and time is not None and time >= end:
            break
        chunks += _samples(mono.resample(frame))
    wave = _joined(chunks + _samples(mono.resample(None)))  # (n,)
    return {rate: _resample(wave, native, rate) for rate in sample_rates}, first_time or 0.0


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(n,) float32 mono at ``rate`` -> (m,) float32 at ``target`` with FFmpeg's resampler."""
    if target == rate or wave.size == 0:
        return wave
    frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    return _joined(_samples(resampler.resample(frame)) + _samples(resampler.resample(None)))


def _samples(frames: list[av.AudioFrame]) -> list[np.ndarray]:
    """Mono ``flt`` frames as (n_i,) arrays."""
    return [frame.to_ndarray().reshape(-1) for frame in frames]


def _joined(chunks: list[np.ndarray]) -> np.ndarray:
    """(n_i,) chunks as one (n,) float32 wave (empty without chunks)."""
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def _cut(
    wave: np.ndarray, first_time: float, sample_rate: int, start: float, end: float | None
) -> np.ndarray:
    """Keep the samples of ``[start, end]`` (seconds) of a wave starting at ``first_time``.

    This also drops encoder priming (samples before time 0) and the padding an encoder adds
    after the stream's stated duration.
    """
    begin = max(int(round((start - first_time) * sample_rate)), 0)
    stop = wave.size
    if end is not None:
        stop = min(int(round((end - first_time) * sample_rate)), wave.size)
    return wave[begin:stop]


def _header_duration(stream: av.stream.Stream) -> float | None:
    """The stream's duration as its header states it (``None`` when it does not)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def segment_bounds(n_samples: int, sample_rate: int, n_segments: int,
                   segment_seconds: float) -> tuple[np.ndarray, int]:
    """Where the ``S = n_segments`` audio segments of a clip of ``n_samples`` lie: (S,) starts, length L.

    The rule, for a clip of ``n`` samples (``n`` raised to one window when shorter):

    - ``L = max(window, ceil(2 n / (S + 1)))`` with ``window = round(segment_seconds * sample_rate)``;
    - segment ``i`` starts at ``round(i * (n - L) / (S - 1))`` (0 when ``S == 1``).

    So the first segment starts at the first sample and the last one ends at the last sample;
    the hop ``(n - L) / (S - 1)`` is at most ``L / 2`` (``L >= 2 n / (S + 1)``), so neighbours
    overlap by at least half a segment (less one sample of rounding) and nothing is left
    out. Long clips get ``L`` of about ``2 n / (S + 1)`` and a hop of half a segment; clips of
    up to ``(S + 1) / 2`` windows keep one window and overlap more.
    """
    if n_segments < 1 or segment_seconds <= 0 or sample_rate < 1:
        raise ValueError(f"need n_segments >= 1, segment_seconds > 0 and sample_rate >= 1, got "
                         f"{n_segments}, {segment_seconds} and {sample_rate}")
    if n_samples < 1:
        raise ValueError("cannot cut segments from an empty wave")
    window = max(int(round(segment_seconds * sample_rate)), 1)
    n_samples = max(n_samples, window)
    length = max(window, -(-2 * n_samples // (n_segments + 1)))
    starts = np.round(np.linspace(0, n_samples - length, n_segments)).astype(np.int64)  # (S,)
    return starts, length


def split_segments(
    wave: np.ndarray, sample_rate: int, n_segments: int, segment_seconds: float
) -> np.ndarray:
    """Cut a wave into ``n_segments`` overlapping segments covering all of it: (S, L) float32.

    ``L`` and the starts follow :func:`segment_bounds` (``L`` is one window for clips of up to
    ``(S + 1) / 2`` windows, longer for longer clips). A clip shorter than one window is
    zero-padded at its end to one window, and every segment is then that padded clip.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    starts, length = segment_bounds(wave.size, sample_rate, n_segments, segment_seconds)
    if wave.size < length:
        wave = np.pad(wave, (0, length - wave.size))  # (L,)
    return wave[starts[:, None] + np.arange(length)[None, :]]  # (S, L)
