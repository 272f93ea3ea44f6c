"""ESResNeXt-FBSP audio embeddings (AudioCLIP's audio head) of overlapping segments (``esresnext``).

Audio is read at 44.1 kHz mono and cut into S overlapping segments that together cover the
whole clip (``hcm.pipeline.media.split_segments``: one length per clip, at least
``segment_seconds``, longer for clips over ``(S + 1) / 2`` segments), scaled to the int16 range
the model expects and embedded one segment per row: ``(S, 1024)`` for the released model. The
network pools over time, so segments of any length give one row each; a batch runs one forward
pass per segment length (a batch of clips of similar length has one or two), and the rows of
all of them come back to the host in one copy. The network itself lives in
``esresnext.py``; this module adapts it to the encoder registry. ``paper`` loads AudioCLIP's
released weights; ``tiny`` builds a small random one (fixed seed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hcm.cache.schema import FeatureSpec
from hcm.pipeline.encoders import esresnext
from hcm.pipeline.encoders.base import (
    Encoded,
    Encoder,
    Preparer,
    calibrate_batchnorm,
    forward_arrays,
    register_encoder,
    seeded,
    to_float16,
    weights_id,
)
from hcm.pipeline.encoders.checkpoints import AUDIOCLIP_FILE, AUDIOCLIP_URL, ESRNX_FILE
from hcm.pipeline.media import split_segments
from hcm.pipeline.weights import ResolvedWeights, WeightSpec

INT16_SCALE = 32767.0
ESRESNEXT_WEIGHTS = WeightSpec("esresnext", "ESResNeXt-FBSP", (AUDIOCLIP_FILE, ESRNX_FILE), "--esresnext-weights",
                               AUDIOCLIP_URL)


@dataclass(frozen=True)
class ESResNeXtSettings:
    """The audio network: its constructor config and whether it is the random tiny one."""

    config: esresnext.ESResNeXtConfig
    tiny: bool = False


def released_settings() -> ESResNeXtSettings:
    return ESResNeXtSettings(esresnext.released_config())


def tiny_settings() -> ESResNeXtSettings:
    """The random tiny network with a short front end (512-point frames, 257 bins instead of the
    released 2048-point 1025): a quarter of the spectrogram, the quickstart's largest CPU cost
    (benchmarks/RESULTS.md, "Quickstart")."""
    config = replace(esresnext.tiny_config(num_classes=64), n_fft=512, hop_length=512, win_length=512)
    return ESResNeXtSettings(config, tiny=True)


@dataclass(frozen=True)
class SegmentPreparer(Preparer):
    """Cuts a 44.1 kHz waveform into S int16-range segments (runs in decoding workers)."""

    rate: int
    segments: int
    segment_seconds: float

    @property
    def modality(self) -> str:
        return "audio"

    @property
    def sample_rate(self) -> int:
        return self.rate

    def __call__(self, media: np.ndarray) -> np.ndarray:
        pieces = split_segments(media, self.rate, self.segments, self.segment_seconds)  # (S, L)
        return (np.asarray(pieces, dtype=np.float32) * INT16_SCALE).astype(np.float32)


def build_esresnext(settings: ESResNeXtSettings, weights: Path | None, seed: int) -> torch.nn.Module:
    """A seeded random network for ``tiny``, else the released one loaded from ``weights``."""
    if settings.tiny or weights is None:
        with seeded(seed + 3):
            model = esresnext.ESResNeXtFBSP.from_config(settings.config)
            noise = torch.randn(4, 44100) * 3000.0  # (4, n): 1 s of int16-range noise
            return calibrate_batchnorm(model, lambda: model(noise))
    from hcm.pipeline.encoders import checkpoints

    return checkpoints.load_esresnext(weights)


@register_encoder("esresnext")
class ESResNeXtEncoder(Encoder):
    """ESResNeXt-FBSP embedding of every audio segment."""

    modality = "audio"
    settings_class = ESResNeXtSettings

    @classmethod
    def paper_settings(cls) -> ESResNeXtSettings:
        return released_settings()

    @classmethod
    def tiny_settings(cls) -> ESResNeXtSettings:
        return tiny_settings()

    @classmethod
    def weight_specs(cls, settings: ESResNeXtSettings) -> tuple[WeightSpec, ...]:
        return () if settings.tiny else (ESRESNEXT_WEIGHTS,)

    def __init__(self, settings: ESResNeXtSettings, preparer: SegmentPreparer, model: torch.nn.Module,
                 weights_id: str, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.settings = settings
        self._preparer = preparer
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()  # see docs/extraction.md
        self.weights_id = weights_id

    @classmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str) -> "ESResNeXtEncoder":
        settings: ESResNeXtSettings = profile.settings[cls.name]
        sampling = profile.sampling
        preparer = SegmentPreparer(sampling.audio_rate, sampling.segments, sampling.segment_seconds)
        model = build_esresnext(settings, weights.path(ESRESNEXT_WEIGHTS.name), profile.seed)
        return cls(settings, preparer, model, weights_id(cls, settings, weights, profile.seed), device)

    @property
    def preparer(self) -> Preparer:
        return self._preparer

    @property
    def outputs(self) -> list[FeatureSpec]:
        config = {**self.settings.config.to_dict(), "sample_rate": self._preparer.rate,
                  "segments": self._preparer.segments, "segment_seconds": self._preparer.segment_seconds}
        dim = self.settings.config.num_classes
        return [FeatureSpec("esresnext", (dim,), "float16", self.name, self.weights_id, config)]

    @torch.inference_mode()
    def encode(self, utterances: Sequence[Any], prepared: Sequence[np.ndarray]) -> list[Encoded]:
        groups = _by_segment_length(prepared)
        order = [i for members in groups for i in members]  # clips in the order their rows are computed
        with self.autocast():
            outputs = [forward_arrays(self.model, [prepared[i] for i in members], self.device)
                       for members in groups]  # each (sum S of the group, D)
        embedded = to_float16(torch.cat(outputs))  # (sum S, D): one copy to the host
        parts = np.split(embedded, np.cumsum([len(prepared[i]) for i in order])[:-1])
        rows = dict(zip(order, parts))
        return [Encoded({"esresnext": rows[i]}) for i in range(len(prepared))]


def _by_segment_length(prepared: Sequence[np.ndarray]) -> list[list[int]]:
    """Positions of the clips in ``prepared`` grouped by segment length (first-seen order)."""
    groups: dict[int, list[int]] = {}
    for i, segments in enumerate(prepared):
        groups.setdefault(segments.shape[1], []).append(i)  # segments: (S, L)
    return list(groups.values())
