"""CLIP with the modified ResNet image tower (RN50 family) and the causal text transformer.

hcm uses the CLIP RN50 image and text embeddings as the ``clip_image`` and ``clip_text``
feature streams (HCMNet, stage one). The modules below reproduce OpenAI's CLIP ResNet
architecture, as also shipped inside AudioCLIP, with parameter and buffer names and shapes
identical to the released checkpoints, so ``load_state_dict(strict=True)`` accepts them
(see :mod:`hcm.pipeline.encoders.checkpoints`).

Image tower (``visual``): a 3-convolution stem with average pooling, four stages of
bottlenecks that downsample with average pooling before the strided path (anti-aliased),
and a multi-head attention pool whose query is the spatial mean token.
Text tower: token + positional embedding, pre-LayerNorm residual attention blocks with a
causal mask and QuickGELU MLPs, final LayerNorm, the row at the end-of-text token projected
by ``text_projection``.

The model does not normalise images itself: use :func:`preprocess_frames` first (or
:func:`crop_frames` in a decoding worker and :func:`normalize_pixels` on the encoder's side).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hcm.core.configs import check_keys

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Keys of a stored CLIP constructor config that carry no information for this implementation.
_IGNORED_CONFIG_KEYS = frozenset({"vision_patch_size"})


@dataclass(frozen=True)
class CLIPConfig:
    """Constructor arguments of CLIP (the names of OpenAI's ``CLIP.__init__``).

    Attributes:
        embed_dim: size of the joint image/text embedding.
        image_resolution: side S of the square input image; a multiple of 32.
        vision_layers: number of bottlenecks in each of the four image stages.
        vision_width: stem width; stage widths are 1, 2, 4, 8 times it (x4 expansion).
        context_length: token positions of the text tower (rows are padded to it).
        vocab_size: rows of the token embedding.
        transformer_width: text tower width W.
        transformer_heads: attention heads of the text tower.
        transformer_layers: residual attention blocks of the text tower.
    """

    embed_dim: int = 1024
    image_resolution: int = 224
    vision_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    vision_width: int = 64
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_heads: int = 8
    transformer_layers: int = 12

    def __post_init__(self) -> None:
        layers = tuple(int(n) for n in self.vision_layers)
        object.__setattr__(self, "vision_layers", layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"vision_layers must be four positive block counts, got {self.vision_layers}")
        if self.image_resolution % 32 != 0:
            raise ValueError(f"image_resolution must be a multiple of 32, got {self.image_resolution}")
        if self.vision_width % 2 != 0 or (self.vision_width * 32) % 64 != 0:
            raise ValueError(f"vision_width must be even, got {self.vision_width}")
        if self.transformer_width % self.transformer_heads != 0:
            raise ValueError(
                f"transformer_width {self.transformer_width} is not divisible by "
                f"transformer_heads {self.transformer_heads}"
            )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "CLIPConfig":
        """Build from a stored constructor config; only a ResNet image tower is supported."""
        patch = config.get("vision_patch_size")
        if patch is not None:
            raise ValueError(
                f"vision_patch_size={patch} selects a ViT image tower; hcm implements the ResNet "
                "tower only (vision_patch_size must be None)"
            )
        check_keys(cls, config, "a CLIP config", ignored=_IGNORED_CONFIG_KEYS)
        return cls(**{k: v for k, v in config.items() if k not in _IGNORED_CONFIG_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict (lists instead of tuples)."""
        out = asdict(self)
        out["vision_layers"] = list(self.vision_layers)
        return out

    @property
    def vision_heads(self) -> int:
        """Heads of the attention pool: one per 64 channels of the 32x-wide last stage."""
        return self.vision_width * 32 // 64


def rn50_config() -> CLIPConfig:
    """The released CLIP RN50 configuration (embedding 1024, image 224, context 77)."""
    return CLIPConfig()


def tiny_config(vocab_size: int = 514) -> CLIPConfig:
    """A small randomly initialised CLIP for tests and the offline ``tiny`` profile."""
    return CLIPConfig(
        embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
        context_length=77, vocab_size=vocab_size, transformer_width=64, transformer_heads=2,
        transformer_layers=2,
    )


class Bottleneck(nn.Module):
    """ResNet bottleneck whose stride is an average pool before the last 1x1 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Multi-head attention pooling: the spatial mean token attends to all positions."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5
        )
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # (HW, B, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1, B, C)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight, in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True, training=self.training, need_weights=False,
        )
        return out[0]  # (B, output_dim)


class ModifiedResNet(nn.Module):
    """CLIP's image tower: 3-conv stem, four bottleneck stages, attention pool."""

    def __init__(self, layers: Sequence[int], output_dim: int, heads: int,
                 input_resolution: int, width: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map fed to the attention pool, (B, 32*width, S/32, S/32)."""
        x = x.to(self.conv1.weight.dtype)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu(self.bn3(self.conv3(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.forward_features(x))  # (B, output_dim)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (fp16 weights stay stable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that CLIP was trained with: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask.to(x.dtype))[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks sharing one causal mask, sequence-first (L, B, W)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


def causal_mask(length: int) -> torch.Tensor:
    """The text tower's additive causal mask: (L, L), -inf above the diagonal, 0 elsewhere."""
    return torch.full((length, length), float("-inf")).triu_(1)


class CLIP(nn.Module):
    """CLIP RN50-family model: ``encode_image`` and ``encode_text`` into a shared space."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.context_length = config.context_length
        self.visual = ModifiedResNet(
            layers=config.vision_layers, output_dim=config.embed_dim, heads=config.vision_heads,
            input_resolution=config.image_resolution, width=config.vision_width,
        )
        self.transformer = Transformer(
            config.transformer_width, config.transformer_layers, config.transformer_heads
        )
        self.vocab_size = config.vocab_size
        self.token_embedding = nn.Embedding(config.vocab_size, config.transformer_width)
        self.positional_embedding = nn.Parameter(
            torch.empty(config.context_length, config.transformer_width)
        )
        self.ln_final = LayerNorm(config.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(config.transformer_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        # Additive causal mask; rebuilt here (and by the checkpoint loader), never stored.
        self.register_buffer("attn_mask", causal_mask(config.context_length), persistent=False)
        self._init_parameters()

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | CLIPConfig) -> "CLIP":
        """Build from a :class:`CLIPConfig` or a stored constructor dict (e.g. a fixture's)."""
        if not isinstance(config, CLIPConfig):
            config = CLIPConfig.from_dict(config)
        return cls(config)

    def _init_parameters(self) -> None:
        width = self.transformer.width
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        pool = self.visual.attnpool
        std = pool.c_proj.in_features ** -0.5
        for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)
        proj_std = width ** -0.5 * (2 * self.transformer.layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the towers take their inputs and residual streams in: the final LayerNorm's
        (float32 unless the whole model was converted, e.g. by ``.half()``). A model with only the
        weights autocast casts stored in its dtype (``precision.store_autocast_weights``) keeps
        float32 here, as autocast does with float32 weights."""
        return self.ln_final.weight.dtype

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) CLIP-normalised RGB -> (B, embed_dim) image embeddings (not L2-normalised)."""
        size = self.config.image_resolution
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(
                f"encode_image expects (B, 3, {size}, {size}) images, got {tuple(images.shape)}; "
                "resize with preprocess_frames(frames, size) first"
            )
        return self.visual(images.to(self.dtype))

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, W) ln_final output at each row's end-of-text token."""
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(
                f"encode_text expects (B, {self.context_length}) token ids, got {tuple(tokens.shape)}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.vocab_size}); got range "
                f"[{int(tokens.min())}, {int(tokens.max())}] (tokenizer and model vocabularies differ?)"
            )
        x = self.token_embedding(tokens).to(self.dtype)  # (B, L, W)
        x = x + self.positional_embedding.to(self.dtype)
        x = self.transformer(x.permute(1, 0, 2), self.attn_mask).permute(1, 0, 2)  # (B, L, W)
        x = self.ln_final(x).to(self.dtype)
        # The end-of-text token has the largest id in every row.
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # (B, W)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, context_length) int64 token ids -> (B, embed_dim) text embeddings (not L2-normalised)."""
        return self.text_features(tokens) @ self.text_projection

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_text(tokens)


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    return image.resize((new_w, new_h), Image.BICUBIC)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def crop_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """The geometric half of :func:`preprocess_frames`: (T, H, W, 3) uint8 RGB -> (T, 3, size, size)
    uint8, shorter side resized to ``size`` (PIL bicubic) and centre-cropped.

    Decoding workers send this to the encoder, a quarter of the bytes of the float32 pixels;
    :func:`normalize_pixels` finishes the preprocessing on each forward pass's rows.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"preprocess_frames expects (T, H, W, 3) uint8 RGB frames, got shape {frames.shape} "
            f"dtype {frames.dtype}"
        )
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"frames have an empty side: {frames.shape}")
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)  # (T, S, S, 3)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(_center_crop(_resize_shorter_side(Image.fromarray(frame), size), size))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))  # (T, 3, S, S)


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, 3, S, S) float32 in [0, 1], normalised with CLIP's mean/std."""
    x = pixels.float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """CLIP image preprocessing of RGB video frames.

    Resize the shorter side to ``size`` (PIL bicubic), centre-crop ``size`` x ``size``, scale to
    [0, 1] and normalise with CLIP's mean/std (:func:`crop_frames`, then :func:`normalize_pixels`).

    Args:
        frames: (T, H, W, 3) uint8 RGB frames.
        size: the model's ``image_resolution``.

    Returns:
        (T, 3, size, size) float32 tensor ready for :meth:`CLIP.encode_image`.
    """
    return normalize_pixels(torch.from_numpy(crop_frames(frames, size))).contiguous()
