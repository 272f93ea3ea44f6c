"""Turn an utterance's audio and video styles into samples and frames (numpy, no encoding).

Audio: a harmonic tone at the style's pitch with a slight vibrato, pulsed into syllables at the
style's tempo, scaled to the style's energy, over a faint noise floor.
Video: a background in the style's hue and brightness and a lighter square that bounces
around at the style's speed. Rendering noise comes from the ``seed`` given, so the same seed
renders the same arrays.
"""

from __future__ import annotations

import colorsys

import numpy as np

from hcm.pipeline.sample.content import AudioStyle, VideoStyle

FADE_SECONDS = 0.01  # fade in/out against clicks at the clip edges
NOISE_FLOOR = 0.005  # sd of the background hiss


def n_frames(duration: float, fps: float) -> int:
    """Frames of a clip of ``duration`` seconds at ``fps`` (at least one)."""
    return max(1, int(round(duration * fps)))


def n_samples(duration: float, sample_rate: int) -> int:
    """Audio samples of a clip of ``duration`` seconds (at least one)."""
    return max(1, int(round(duration * sample_rate)))


def render_audio(style: AudioStyle, duration: float, sample_rate: int, seed: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of shape (n,) for ``duration`` seconds."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples(duration, sample_rate)) / sample_rate  # (n,)
    f0 = style.pitch_hz * (1.0 + 0.02 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) / 1.75
    syllables = (0.5 - 0.5 * np.cos(2 * np.pi * style.tempo_hz * t + rng.uniform(0, np.pi))) ** 2
    signal = style.energy * syllables * voice + rng.normal(0.0, NOISE_FLOOR, t.size)
    fade = min(t.size // 2, int(FADE_SECONDS * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        signal[:fade] *= ramp
        signal[-fade:] *= ramp[::-1]
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def render_video(style: VideoStyle, frames: int, size: int, seed: int) -> np.ndarray:
    """RGB frames of shape (frames, size, size, 3), uint8."""
    rng = np.random.default_rng(seed)
    background = np.array(colorsys.hsv_to_rgb(style.hue, style.saturation, style.brightness))
    square = np.array(colorsys.hsv_to_rgb(style.hue, style.saturation * 0.5,
                                          min(1.0, style.brightness + 0.15)))
    shade = np.linspace(0.92, 1.08, size)[:, None, None]  # (size, 1, 1) vertical gradient
    base = np.clip(shade * background[None, None, :], 0.0, 1.0)  # (size, 1, 3)
    base = np.broadcast_to(base, (size, size, 3))  # (size, size, 3)
    side = max(2, size // 4)
    travel = size - side
    start = rng.uniform(0, 2 * travel, 2)
    direction = rng.choice([-1.0, 1.0], 2) * np.array([1.0, 0.7])
    out = np.empty((frames, size, size, 3), dtype=np.uint8)  # (T, H, W, 3)
    for i in range(frames):
        y, x = (_bounce(start[k] + direction[k] * style.speed * i, travel) for k in range(2))
        frame = base.copy()
        frame[y:y + side, x:x + side] = square
        out[i] = np.round(frame * 255.0).astype(np.uint8)
    return out


def _bounce(position: float, travel: int) -> int:
    """Fold an unbounded coordinate into [0, travel], as a ball bouncing between two walls."""
    period = 2 * travel
    p = position % period if period else 0.0
    return int(round(p if p <= travel else period - p))
