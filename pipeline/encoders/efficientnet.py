"""EfficientNet frame features: one pooled vector per sampled frame (``efficientnet`` stream).

The paper's video features come from a pre-trained EfficientNet; hcm uses efficientnet_pytorch's
``efficientnet-b0``: ``extract_features`` followed by global average pooling gives 1280 values
per frame. Frames are resized (shorter side, bicubic), centre-cropped to the model's image size
and normalised with the ImageNet mean and std.

The ``tiny`` profile builds the same ``EfficientNet`` class from a small ``GlobalParams``
(width 0.25, depth 0.1, 64 px: 320 values per frame), randomly initialised with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from hcm.cache.schema import FeatureSpec
from hcm.pipeline.encoders.base import (
    Encoded,
    Encoder,
    EncoderError,
    Preparer,
    calibrate_batchnorm,
    forward_arrays,
    register_encoder,
    seeded,
    to_float16,
    weights_id,
)
from hcm.pipeline.weights import ResolvedWeights, WeightSpec

EFFICIENTNET_B0_FILE = "efficientnet-b0-355c32eb.pth"
EFFICIENTNET_B0_URL = "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/" + EFFICIENTNET_B0_FILE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EfficientNetSettings:
    """EfficientNet frame features.

    Args:
        model: efficientnet_pytorch model name (paper: ``efficientnet-b0``); ``tiny`` for the small one.
        image_size: side of the square input.
        width, depth: the tiny model's width and depth coefficients (ignored otherwise).
    """

    model: str = "efficientnet-b0"
    image_size: int = 224
    width: float = 0.25
    depth: float = 0.1

    @property
    def tiny(self) -> bool:
        return self.model == "tiny"


def resize_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: shorter side to ``size``, centre crop."""
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)  # (T, S, S, 3)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        scale = size / min(image.size)
        width, height = max(size, round(image.size[0] * scale)), max(size, round(image.size[1] * scale))
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        out[t] = np.asarray(image.crop((left, top, left + size, top + size)))
    return out


@dataclass(frozen=True)
class EfficientNetPreparer(Preparer):
    """Resize and crop frames (runs in decoding workers); the encoder ImageNet-normalises them."""

    image_size: int

    @property
    def modality(self) -> str:
        return "video"

    def __call__(self, media: np.ndarray) -> np.ndarray:
        crops = resize_crop(media, self.image_size)  # (T, S, S, 3) uint8
        return np.ascontiguousarray(crops.transpose(0, 3, 1, 2))  # (T, 3, S, S), normalised by the encoder


def imagenet_normalize(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> float32 in [0, 1], normalised with ImageNet's mean/std."""
    x = pixels.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def build_efficientnet(settings: EfficientNetSettings, weights: Path | None, seed: int) -> torch.nn.Module:
    """The network: a seeded small one for ``tiny``, else ``settings.model`` with the weight file."""
    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import efficientnet

    if settings.tiny:
        blocks, params = efficientnet(width_coefficient=settings.width, depth_coefficient=settings.depth,
                                      image_size=settings.image_size, include_top=False)
        with seeded(seed):
            model = EfficientNet(blocks, params)
            noise = torch.randn(8, 3, settings.image_size, settings.image_size)  # (8, 3, S, S)
            return calibrate_batchnorm(model, lambda: model.extract_features(noise))
    model = EfficientNet.from_name(settings.model, include_top=False)
    if weights is None:
        raise EncoderError(f"no weight file for {settings.model}; see `hcm extract --help` (--weights-dir)")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # the classifier is unused
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EncoderError(f"{weights} does not hold {settings.model} weights "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def _hub_checkpoints() -> Path:
    """torch hub's checkpoint folder (where efficientnet_pytorch downloads its weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@register_encoder("efficientnet")
class EfficientNetEncoder(Encoder):
    """Global-average-pooled EfficientNet features of every sampled frame."""

    modality = "video"
    settings_class = EfficientNetSettings

    @classmethod
    def paper_settings(cls) -> EfficientNetSettings:
        return EfficientNetSettings()

    @classmethod
    def tiny_settings(cls) -> EfficientNetSettings:
        return EfficientNetSettings(model="tiny", image_size=64)

    @classmethod
    def weight_specs(cls, settings: EfficientNetSettings) -> tuple[WeightSpec, ...]:
        if settings.tiny:
            return ()
        b0 = settings.model == "efficientnet-b0"
        filename = EFFICIENTNET_B0_FILE if b0 else f"{settings.model}.pth"
        return (WeightSpec("efficientnet", f"EfficientNet {settings.model!r}", (filename,), "--efficientnet-weights",
                           EFFICIENTNET_B0_URL if b0 else "", cached=lambda: [_hub_checkpoints() / filename],
                           download_to=(lambda: _hub_checkpoints() / filename) if b0 else None),)

    def __init__(self, settings: EfficientNetSettings, model: torch.nn.Module, weights_id: str,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.settings = settings
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()  # see docs/extraction.md
        self.weights_id = weights_id

    @classmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str) -> "EfficientNetEncoder":
        settings: EfficientNetSettings = profile.settings[cls.name]
        model = build_efficientnet(settings, weights.path("efficientnet"), profile.seed)
        return cls(settings, model, weights_id(cls, settings, weights, profile.seed), device)

    def autocast_networks(self) -> list[torch.nn.Module]:
        return [self.model]

    @property
    def preparer(self) -> Preparer:
        return EfficientNetPreparer(self.settings.image_size)

    @property
    def outputs(self) -> list[FeatureSpec]:
        dim = int(self.model._conv_head.out_channels)
        config = {"model": self.settings.model, "image_size": self.settings.image_size,
                  "normalisation": "imagenet", "pooling": "global average of extract_features"}
        if self.settings.tiny:
            config.update(width=self.settings.width, depth=self.settings.depth)
        return [FeatureSpec("efficientnet", (dim,), "float16", self.name, self.weights_id, config)]

    @torch.inference_mode()
    def encode(self, utterances: Sequence[Any], prepared: Sequence[np.ndarray]) -> list[Encoded]:
        counts = [len(frames) for frames in prepared]
        with self.autocast():  # frames: (sum T, 3, S, S) uint8
            pooled = forward_arrays(self._pooled, prepared, self.device)  # (sum T, D)
        return [Encoded({"efficientnet": rows}) for rows in np.split(to_float16(pooled), np.cumsum(counts)[:-1])]

    def _pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) uint8 crops -> (N, D): normalised, channels-last (docs/extraction.md), global
        average of ``extract_features``, pooled in float32."""
        normalized = imagenet_normalize(pixels).contiguous(memory_format=torch.channels_last)
        return self.model.extract_features(normalized).float().mean(dim=(2, 3))
