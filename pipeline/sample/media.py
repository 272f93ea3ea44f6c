"""Write the sample corpora's media files with PyAV (FFmpeg's libraries bundled in the wheel).

- ``.mp4``: H.264 video (libx264, yuv420p) and, unless left out, mono AAC audio; the layout of
  the CMU-MOSEI and MELD clips.
- ``.avi``: MPEG-4 Part 2 video and mono 16-bit PCM audio; the layout of IEMOCAP's
  ``dialog/avi/DivX/<dialog>.avi``.
- ``.wav``: mono 16-bit PCM (soundfile); IEMOCAP's ``sentences/wav``.

The encoders run single-threaded with fixed settings, so the same frames and samples give the
same bytes on the same PyAV build.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile

from hcm.pipeline.sample.content import AudioStyle, UtteranceContent, VideoStyle
from hcm.pipeline.sample.registry import MISSING_CLIP, NO_AUDIO, TRUNCATED_MEDIA, MediaJob
from hcm.pipeline.sample.render import n_frames, render_audio, render_video

X264_OPTIONS = {"preset": "ultrafast", "crf": "20"}
AAC_OPTIONS = {"aac_coder": "fast"}  # FFmpeg's fast AAC coder: a fraction of the default's time
MPEG4_BIT_RATE = 600_000


def write_mp4(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None,
              sample_rate: int) -> None:
    """H.264 + AAC mp4 from frames (T, H, W, 3) uint8 and mono samples (n,) float32.

    ``audio=None`` writes a clip without an audio stream.
    """
    with av.open(str(path), "w", format="mp4") as container:
        video = _video_stream(container, "libx264", frames, fps)
        video.options = dict(X264_OPTIONS)
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.options = dict(AAC_OPTIONS)
        _mux(container, video, frames, sound, _audio_frame(audio, "fltp", sample_rate))


def write_avi(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray,
              sample_rate: int) -> None:
    """MPEG-4 Part 2 + PCM avi from frames (T, H, W, 3) uint8 and mono samples (n,) float32."""
    with av.open(str(path), "w", format="avi") as container:
        video = _video_stream(container, "mpeg4", frames, fps)
        video.bit_rate = MPEG4_BIT_RATE
        sound = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        _mux(container, video, frames, sound, _audio_frame(audio, "s16", sample_rate))


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM wav from samples (n,) float32 in [-1, 1]."""
    soundfile.write(str(path), to_pcm16(audio), sample_rate, subtype="PCM_16", format="WAV")


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16, the same way for the avi track and the wavs."""
    samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return np.round(samples * 32767.0).astype(np.int16)


def truncate(path: Path, keep: float = 0.4) -> int:
    """Cut a written file to its first ``keep`` fraction of bytes (a broken download); new size."""
    data = Path(path).read_bytes()
    size = max(1, int(len(data) * keep))
    Path(path).write_bytes(data[:size])
    return size


def _video_stream(container: av.container.OutputContainer, codec: str, frames: np.ndarray,
                  fps: int) -> av.VideoStream:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    stream = container.add_stream(codec, rate=Fraction(fps))
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = 1
    return stream


def _audio_frame(audio: np.ndarray | None, fmt: str, sample_rate: int) -> av.AudioFrame | None:
    if audio is None:
        return None
    samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    if fmt == "s16":
        samples = to_pcm16(samples)
    samples = samples[None, :]  # (1, n)
    frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0  # lets the muxer hide the encoder's priming samples behind an edit list
    return frame


def _mux(container: av.container.OutputContainer, video: av.VideoStream, frames: np.ndarray,
         sound: av.AudioStream | None, audio: av.AudioFrame | None) -> None:
    for image in frames:
        container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    container.mux(video.encode())
    if sound is not None and audio is not None:
        container.mux(sound.encode(audio))
        container.mux(sound.encode())


@dataclass(frozen=True)
class ClipSpec:
    """Size, frame rate and audio rate of a corpus's clips."""

    size: int = 96  # frame height and width in pixels
    fps: int = 10
    sample_rate: int = 16000


@dataclass(frozen=True)
class ClipWriter:
    """Render one utterance and write it in the container its path names: mp4 (the default), avi
    or wav (audio only); a :class:`MediaJob`'s ``write``."""

    path: str  # relative to the corpus root
    audio: AudioStyle
    video: VideoStyle
    seed: int
    duration: float  # seconds
    spec: ClipSpec
    with_audio: bool = True  # False: an mp4 clip without an audio stream (a fault)
    keep: float | None = None  # a fraction: cut the file to it after writing (a fault)

    def __call__(self, root: Path) -> None:
        target, suffix = root / self.path, Path(self.path).suffix.lower()
        samples = None
        if self.with_audio or suffix != ".mp4":
            samples = render_audio(self.audio, self.duration, self.spec.sample_rate, self.seed + 1)
        if suffix == ".wav":
            write_wav(target, samples, self.spec.sample_rate)
        else:
            frames = render_video(self.video, n_frames(self.duration, self.spec.fps), self.spec.size, self.seed)
            if suffix == ".avi":
                write_avi(target, frames, self.spec.fps, samples, self.spec.sample_rate)
            else:
                write_mp4(target, frames, self.spec.fps, samples, self.spec.sample_rate)
        if self.keep is not None:
            truncate(target, self.keep)


def clip_job(path: str, content: UtteranceContent, duration: float, spec: ClipSpec,
             fault: str | None = None) -> MediaJob | None:
    """The media job of one clip-per-utterance corpus item with its ``fault`` kind, if any: none for a
    missing clip, a clip without audio, or one cut to 40 % of its bytes."""
    if fault == MISSING_CLIP:
        return None
    return MediaJob(path, ClipWriter(path, content.audio, content.video, content.render_seed, duration, spec,
                                     with_audio=fault != NO_AUDIO, keep=0.4 if fault == TRUNCATED_MEDIA else None))
