"""CLIP RN50 image and text embeddings (``clip_image`` per sampled frame, ``clip_text`` per utterance).

The paper encodes frames and text with CLIP ResNet-50 (its modality-specific heads). The
network and the tokenizer live in ``clip.py`` and ``clip_tokenizer.py``; this module adapts
them to the encoder registry. Frames are preprocessed the CLIP way (shorter side to 224,
bicubic, centre crop, CLIP mean/std) in the decoding workers. ``clip_text`` is the text tower's
embedding of the current utterance alone; a text longer than CLIP's 77-token context is cut
and the cut recorded in ``Item.notes["clip_truncated"]``. The two encoders of one extraction use
one CLIP model (``SharedModels``), each its own tower; a tower no encoder of the profile uses is
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hcm.cache.schema import FeatureSpec
from hcm.pipeline.encoders import clip
from hcm.pipeline.encoders.base import (
    Encoded,
    Encoder,
    EncoderError,
    Preparer,
    SharedModels,
    calibrate_batchnorm,
    forward_arrays,
    register_encoder,
    seeded,
    to_device,
    to_float16,
    weights_id,
)
from hcm.pipeline.encoders.checkpoints import AUDIOCLIP_FILE, AUDIOCLIP_URL, RN50_FILE, RN50_URL
from hcm.pipeline.encoders.clip_tokenizer import ClipTokenizer
from hcm.pipeline.weights import ResolvedWeights, WeightSpec

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_BPE_URL = "https://github.com/openai/CLIP/raw/main/clip/" + CLIP_BPE_FILE
OPENAI_CLIP_CACHE = Path("~/.cache/clip")  # where OpenAI's clip package keeps its downloads
CLIP_WEIGHTS = WeightSpec(
    "clip", "CLIP RN50", (RN50_FILE, AUDIOCLIP_FILE), "--clip-weights",
    f"{RN50_URL} (OpenAI) or {AUDIOCLIP_URL} (AudioCLIP, holds CLIP too)",
    cached=lambda: [OPENAI_CLIP_CACHE.expanduser() / RN50_FILE],
)
CLIP_VOCAB = WeightSpec("clip_vocab", "CLIP BPE vocabulary", (CLIP_BPE_FILE,), "--clip-vocab", CLIP_BPE_URL,
                        cached=lambda: [OPENAI_CLIP_CACHE.expanduser() / CLIP_BPE_FILE])


@dataclass(frozen=True)
class ClipSettings:
    """The CLIP network: its constructor config and whether it is the random tiny one."""

    config: clip.CLIPConfig
    tiny: bool = False


def rn50_settings() -> ClipSettings:
    return ClipSettings(clip.rn50_config())


def tiny_clip_settings() -> ClipSettings:
    return ClipSettings(clip.tiny_config(vocab_size=ClipTokenizer.tiny().vocab_size), tiny=True)


@dataclass(frozen=True)
class ClipFramePreparer(Preparer):
    """The resize and crop of CLIP's preprocessing of sampled frames (runs in decoding workers)."""

    image_size: int

    @property
    def modality(self) -> str:
        return "video"

    def __call__(self, media: np.ndarray) -> np.ndarray:
        return clip.crop_frames(media, self.image_size)  # (T, 3, S, S) uint8, normalised by the encoder


def build_clip(settings: ClipSettings, weights: Path | None, seed: int) -> clip.CLIP:
    """A seeded random CLIP for ``tiny``, else RN50 loaded from ``weights`` (RN50.pt or AudioCLIP)."""
    if settings.tiny or weights is None:
        with seeded(seed + 2):
            model = clip.CLIP.from_config(settings.config)
            side = settings.config.image_resolution
            noise = torch.randn(8, 3, side, side)  # (8, 3, S, S), about the scale of normalised pixels
            return calibrate_batchnorm(model, lambda: model.encode_image(noise))
    from hcm.pipeline.encoders import checkpoints

    return checkpoints.load_clip(weights)


def build_clip_tokenizer(settings: ClipSettings, vocab: Path | None) -> ClipTokenizer:
    """The tiny byte-level tokenizer for ``tiny``, else CLIP's BPE from ``vocab``."""
    if settings.tiny:
        return ClipTokenizer.tiny(settings.config.context_length)
    if vocab is None:
        raise EncoderError(f"CLIP's BPE vocabulary {CLIP_BPE_FILE} is needed; put it in --weights-dir")
    return ClipTokenizer.from_bpe_file(vocab, settings.config.context_length)


class _ClipEncoder(Encoder):
    """Shared declaration and construction of the two CLIP encoders (each keeps one tower)."""

    settings_class = ClipSettings
    shares_models = True  # one CLIP for the image and the text encoder

    @classmethod
    def paper_settings(cls) -> ClipSettings:
        return rn50_settings()

    @classmethod
    def tiny_settings(cls) -> ClipSettings:
        return tiny_clip_settings()

    @classmethod
    def weight_specs(cls, settings: ClipSettings) -> tuple[WeightSpec, ...]:
        return () if settings.tiny else (CLIP_WEIGHTS,)

    @classmethod
    def _model(cls, profile: Any, weights: ResolvedWeights,
               shared: SharedModels | None) -> tuple[ClipSettings, clip.CLIP, str]:
        """The settings, the network (the one in ``shared`` when the other CLIP encoder built it
        already) and the weights id of this encoder in ``profile``."""
        settings: ClipSettings = profile.settings[cls.name]
        path = weights.path(CLIP_WEIGHTS.name)
        key = ("clip", settings, None if settings.tiny else path, profile.seed)
        model = (shared or SharedModels()).get(key, lambda: build_clip(settings, path, profile.seed))
        return settings, model, weights_id(cls, settings, weights, profile.seed)

    def __init__(self, settings: ClipSettings, model: clip.CLIP, weights_id: str,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.settings = settings
        self.model = model.to(self.device).eval()
        self.weights_id = weights_id

    def autocast_networks(self) -> list[torch.nn.Module]:
        return [self.model]  # shared: the second encoder finds its weights stored already

    def _spec(self, name: str, extra: dict) -> FeatureSpec:
        config = {**self.settings.config.to_dict(), **extra}
        return FeatureSpec(name, (self.settings.config.embed_dim,), "float16", self.name, self.weights_id, config)


@register_encoder("clip_image")
class ClipImageEncoder(_ClipEncoder):
    """CLIP image embedding of every sampled frame."""

    modality = "video"

    @classmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str, *,
                     shared: SharedModels | None = None) -> "ClipImageEncoder":
        settings, model, weights_id = cls._model(profile, weights, shared)
        if ClipTextEncoder.name not in profile.encoders:
            model.transformer = model.token_embedding = None  # the text tower is not used
        model.visual.to(memory_format=torch.channels_last)  # see docs/extraction.md
        return cls(settings, model, weights_id, device)

    @property
    def preparer(self) -> Preparer:
        return ClipFramePreparer(self.settings.config.image_resolution)

    @property
    def outputs(self) -> list[FeatureSpec]:
        return [self._spec("clip_image", {"preprocess": "clip (bicubic, centre crop, CLIP mean/std)"})]

    @torch.inference_mode()
    def encode(self, utterances: Sequence[Any], prepared: Sequence[np.ndarray]) -> list[Encoded]:
        counts = [len(frames) for frames in prepared]
        with self.autocast():  # frames: (sum T, 3, S, S) uint8
            embedded = to_float16(forward_arrays(self._embed, prepared, self.device))  # (sum T, D)
        return [Encoded({"clip_image": rows}) for rows in np.split(embedded, np.cumsum(counts)[:-1])]


    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) uint8 crops -> (N, D): normalised, channels-last (docs/extraction.md), embedded."""
        normalized = clip.normalize_pixels(pixels).contiguous(memory_format=torch.channels_last)
        return self.model.encode_image(normalized)


@register_encoder("clip_text")
class ClipTextEncoder(_ClipEncoder):
    """CLIP text embedding of the current utterance, one row."""

    modality = "text"

    def __init__(self, settings: ClipSettings, model: clip.CLIP, tokenizer: ClipTokenizer, weights_id: str,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(settings, model, weights_id, device)
        self.tokenizer = tokenizer

    @classmethod
    def weight_specs(cls, settings: ClipSettings) -> tuple[WeightSpec, ...]:
        return () if settings.tiny else (CLIP_WEIGHTS, CLIP_VOCAB)

    @classmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str, *,
                     shared: SharedModels | None = None) -> "ClipTextEncoder":
        settings, model, weights_id = cls._model(profile, weights, shared)
        if ClipImageEncoder.name not in profile.encoders:
            model.visual = None  # the image tower is not used
        tokenizer = build_clip_tokenizer(settings, weights.path(CLIP_VOCAB.name))
        return cls(settings, model, tokenizer, weights_id, device)

    @property
    def outputs(self) -> list[FeatureSpec]:
        tokenizer = "tiny byte-level" if self.settings.tiny else CLIP_BPE_FILE
        return [self._spec("clip_text", {"tokenizer": tokenizer, "text": "current utterance"})]

    @torch.inference_mode()
    def encode(self, utterances: Sequence[Any], prepared: Sequence[Any]) -> list[Encoded]:
        texts = [(u.text or "").strip() for u in utterances]
        tokens = to_device(self.tokenizer(texts), self.device)  # (B, 77)
        with self.autocast():
            embedded = to_float16(self.model.encode_text(tokens))  # (B, D)
        notes = [{"clip_truncated": "text cut to CLIP's context"} if self.tokenizer.is_truncated(t) else {}
                 for t in texts]
        return [Encoded({"clip_text": embedded[i:i + 1]}, notes[i]) for i in range(len(texts))]
