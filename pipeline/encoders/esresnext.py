"""ESResNeXt-FBSP: AudioCLIP's audio encoder, a learnable-STFT front end on a ResNeXt-50 32x4d.

hcm uses its 1024-d output as the ``esresnext`` audio feature stream (HCMNet, stage one). The
module reproduces the released architecture with parameter and buffer names and shapes
identical to AudioCLIP's checkpoints (``ESRNXFBSP.pt`` and the ``audio.*`` part of
``AudioCLIP-Full-Training.pt``; see :mod:`hcm.pipeline.encoders.checkpoints`).

Forward pass, all inside the model:

1. int16-range waveform -> [-1, 1] by the affine map (x + 32768) * 2 / 65535 - 1.
2. Framing: ``win_length`` samples every ``hop_length``, zero padding split floor-half left /
   rest right so the frames cover the signal, multiplied by the stored window; each frame is
   then zero-padded to ``n_fft`` (floor-half left).
3. FBSP (frequency B-spline) transform: per output bin k a learnable complex kernel
   sqrt(fb_k) * sinc(fb_k t / m_k)^m_k * exp(-i fc_k t) over t in pi*[-1, 1], divided by
   sqrt(n_fft) when ``normalized``; power |X|^2.
4. The bins (truncated to a multiple of 3) form three contiguous frequency bands, used as the
   three input channels (rows = frequency, columns = frames); power floored at 1e-18, in dB.
5. ResNeXt backbone whose stages are gated by attention masks (adaptive max pool ->
   depthwise conv -> pointwise conv -> BN -> sigmoid), attention-gated global average pool,
   and a linear head. Several audio channels (B, C, n) run separately; their pooled features
   are summed before the head.

Steps 1-4 always run in float32, also under ``torch.autocast``: the FBSP kernels are cos/sin of
arguments up to ~3200 rad and a DFT of 2048 samples loses the quiet bins in 8-bit mantissas
(under bfloat16 the reference fixture's embedding moved by 9.3 % of its norm with the front end
in bfloat16, 5.2 % with it in float32). The backbone
takes the dB image in the memory layout of its first convolution's weights (channels-last
when the encoder converted the model to it).

One optional argument is not part of the released architecture: ``base_width`` (default 64)
scales the hard-coded stage widths 64/128/256/512 for a fast ``tiny`` profile.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from hcm.core.configs import check_keys

INT16_MIN = -32768.0
INT16_MAX = 32767.0
POWER_FLOOR = 1e-18
NUM_BANDS = 3
# torch 2.13's CPU bfloat16 convolutions (oneDNN) return wrong values, even NaN, when a stride-2
# convolution's output is one column wide (measured with 3x3 and 7x7 kernels on inputs 2 columns
# wide and at least 9 rows tall). The backbone's last stride-2 convolution gets ceil(T / 16) columns
# of a T-frame spectrogram, so under CPU bfloat16 autocast spectrograms of fewer frames (or bins)
# than this run the backbone in float32 (0.75 s of audio at 44.1 kHz; the paper's segments are >= 1 s).
MIN_BF16_SIDE = 33

# Stored constructor keys that describe choices hcm has fixed (the block type) or handles
# elsewhere (pretrained weights come through hcm.pipeline.encoders.checkpoints).
_IGNORED_CONFIG_KEYS = frozenset({"block", "pretrained"})


@dataclass(frozen=True)
class ESResNeXtConfig:
    """Constructor arguments of ESResNeXt-FBSP (the original names) plus ``base_width``.

    Attributes:
        layers: bottlenecks per stage; the released model uses (3, 4, 6, 3).
        num_classes: output size of the linear head (1024 in AudioCLIP).
        n_fft: FBSP transform length; the front end has n_fft // 2 + 1 bins when onesided.
        hop_length: samples between frames.
        win_length: samples per frame (<= n_fft).
        window: scipy.signal window name of the frame window buffer.
        normalized: divide the FBSP kernels by sqrt(n_fft).
        onesided: keep n_fft // 2 + 1 bins (else n_fft).
        spec_height, spec_width: -1 (no resizing of the spectrogram), the only supported value.
        apply_attention: gate each stage and the pooled features with attention masks.
        groups, width_per_group: ResNeXt cardinality and group width (32 x 4).
        zero_init_residual: zero the last BN of every bottleneck at initialisation.
        base_width: hcm extension, channels of the stem; stage widths are 1, 2, 4, 8 times it.
    """

    layers: tuple[int, ...] = (3, 4, 6, 3)
    num_classes: int = 1024
    n_fft: int = 2048
    hop_length: int = 561
    win_length: int = 1654
    window: str = "blackmanharris"
    normalized: bool = True
    onesided: bool = True
    spec_height: int = -1
    spec_width: int = -1
    apply_attention: bool = True
    groups: int = 32
    width_per_group: int = 4
    zero_init_residual: bool = False
    base_width: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {self.layers}")
        if self.spec_height != -1 or self.spec_width != -1:
            raise ValueError(
                f"spec_height/spec_width = {self.spec_height}/{self.spec_width}: hcm supports only -1 "
                "(no spectrogram resizing), as in AudioCLIP"
            )
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length {self.win_length} must lie in (0, n_fft={self.n_fft}]")
        if self.hop_length < 1:
            raise ValueError(f"hop_length must be positive, got {self.hop_length}")
        if self.num_bins < NUM_BANDS:
            raise ValueError(f"n_fft {self.n_fft} gives fewer than {NUM_BANDS} frequency bins")
        if int(self.base_width * self.width_per_group / 64) < 1:
            raise ValueError(
                f"base_width {self.base_width} with width_per_group {self.width_per_group} leaves "
                "bottlenecks without channels; use base_width >= 16"
            )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "ESResNeXtConfig":
        """Build from a stored constructor config, ignoring ``block`` and ``pretrained``."""
        check_keys(cls, config, "an ESResNeXt config", ignored=_IGNORED_CONFIG_KEYS)
        return cls(**{k: v for k, v in config.items() if k not in _IGNORED_CONFIG_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict."""
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1 if self.onesided else self.n_fft

    @property
    def feature_dim(self) -> int:
        """Size of the pooled features fed to the head (2048 for the released model)."""
        return self.base_width * 8 * Bottleneck.expansion


def released_config() -> ESResNeXtConfig:
    """The configuration of AudioCLIP's released audio encoder."""
    return ESResNeXtConfig()


def tiny_config(num_classes: int = 64) -> ESResNeXtConfig:
    """A small randomly initialised encoder for tests and the offline ``tiny`` profile."""
    return ESResNeXtConfig(layers=(1, 1, 1, 1), num_classes=num_classes, base_width=16)


def scale_int16(x: torch.Tensor) -> torch.Tensor:
    """Affine map of [-32768, 32767] onto [-1, 1] (0 maps to 1.5e-5, not to 0)."""
    return (x - INT16_MIN) * 2.0 / (INT16_MAX - INT16_MIN) - 1.0


def frame_signal(signal: torch.Tensor, frame_length: int, hop_length: int,
                 window: torch.Tensor) -> torch.Tensor:
    """Cut (N, n) signals into windowed frames (N, n_frames, frame_length).

    n_frames = 1 + ceil((n - frame_length) / hop) (1 when n <= frame_length); the zero padding
    that makes the frames fit is split floor-half on the left, the rest on the right.
    """
    n = signal.shape[-1]
    n_frames = 1 if n <= frame_length else 1 + math.ceil((n - frame_length) / hop_length)
    pad = (n_frames - 1) * hop_length + frame_length - n
    if pad > 0:
        signal = F.pad(signal, (pad // 2, pad - pad // 2))
    frames = signal.unfold(-1, frame_length, hop_length)  # (N, n_frames, frame_length)
    return frames * window


class LinearFBSP(nn.Module):
    """Learnable Fourier transform with a per-bin sinc^m window (AudioCLIP's FBSP layer).

    Parameters ``m`` (window exponent), ``fb`` (bandwidth) and ``fc`` (centre frequency) per
    output bin; ``bias`` is kept empty for key compatibility and never applied.
    """

    eps = 1e-8

    def __init__(self, out_features: int, normalized: bool) -> None:
        super().__init__()
        self.out_features = out_features
        self.normalized = normalized
        self.m = nn.Parameter(torch.zeros(out_features))
        self.fb = nn.Parameter(torch.ones(out_features))
        self.fc = nn.Parameter(torch.arange(out_features, dtype=torch.get_default_dtype()))
        self.bias = nn.Parameter(torch.empty(0))
        self._inference_kernels: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def kernels(self, in_features: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary kernels, each (out_features, in_features)."""
        t = math.pi * torch.linspace(-1.0, 1.0, in_features, dtype=dtype, device=self.m.device)
        t = t.reshape(1, -1) + self.eps  # (1, n_fft)
        m, fb, fc = (p.to(dtype).reshape(-1, 1) for p in (self.m, self.fb, self.fc))  # (F, 1)
        arg = fc * t  # (F, n_fft)
        kernel_re, kernel_im = torch.cos(arg), -torch.sin(arg)
        x = fb * t / (m + self.eps)
        sinc = torch.where(x != 0, torch.sin(x) / x, torch.ones_like(x))
        # Complex power (sinc + 0i)^m on the principal branch: phase pi where sinc < 0.
        magnitude = (sinc ** 2) ** 0.5
        phase = torch.zeros_like(sinc).atan2(sinc)
        magnitude = magnitude ** m
        win_re, win_im = magnitude * torch.cos(phase * m), magnitude * torch.sin(phase * m)
        scale = fb.sqrt()
        weight_re = scale * (win_re * kernel_re - win_im * kernel_im)
        weight_im = scale * (win_re * kernel_im + win_im * kernel_re)
        if self.normalized:
            weight_re, weight_im = weight_re / in_features ** 0.5, weight_im / in_features ** 0.5
        return weight_re, weight_im

    def cached_kernels(self, in_features: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``kernels`` without autograd, rebuilt only when the parameters, size or dtype change.

        Building them costs as much as a small forward pass, and extraction calls the layer
        with the same weights thousands of times.
        """
        params = (self.m, self.fb, self.fc)
        key = (in_features, dtype, self.m.device) + tuple((p.data_ptr(), p._version) for p in params)
        if self._inference_kernels is None or self._inference_kernels[0] != key:
            self._inference_kernels = (key, self.kernels(in_features, dtype))
        return self._inference_kernels[1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, T, n_fft) real frames -> (N, T, out_features, 2) complex spectrum (re, im)."""
        if torch.is_grad_enabled():
            weight_re, weight_im = self.kernels(frames.shape[-1], frames.dtype)
        else:
            weight_re, weight_im = self.cached_kernels(frames.shape[-1], frames.dtype)
        return torch.stack((F.linear(frames, weight_re), F.linear(frames, weight_im)), dim=-1)


class Bottleneck(nn.Module):
    """ResNeXt bottleneck with the stride in the grouped 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None,
                 groups: int, width_per_group: int) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Attention(nn.Module):
    """Attention mask: adaptive max pool to the target size, depthwise + pointwise conv, BN, sigmoid."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 padding: tuple[int, int]) -> None:
        super().__init__()
        self.conv_depth = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding,
                                    groups=in_channels)
        self.conv_point = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        x = F.adaptive_max_pool2d(x, tuple(size))
        return self.activation(self.bn(self.conv_point(self.conv_depth(x))))


# (kernel, padding) of the attention blocks att1..att5: frequency-wise, time-wise, alternating.
_ATTENTION_KERNELS = (((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 1), (1, 0)), ((1, 5), (0, 2)),
                      ((3, 5), (1, 2)))


class ESResNeXtFBSP(nn.Module):
    """AudioCLIP's audio encoder: (B, n) or (B, C, n) int16-range waveforms -> (B, num_classes)."""

    def __init__(self, config: ESResNeXtConfig) -> None:
        super().__init__()
        self.config = config
        window = scipy.signal.get_window(config.window, config.win_length, fftbins=True)
        self.register_buffer("window", torch.from_numpy(np.asarray(window, dtype=np.float32)))
        width = config.base_width
        self._inplanes = width
        self.conv1 = nn.Conv2d(NUM_BANDS, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stage_planes = [width, width * 2, width * 4, width * 8]
        att_in = [width] + [p * Bottleneck.expansion for p in stage_planes]
        att_out = [p * Bottleneck.expansion for p in stage_planes] + [config.feature_dim]
        # Registration order (stage i, then its attention att_i) matches the reference key order.
        for i, (planes, blocks) in enumerate(zip(stage_planes, config.layers), start=1):
            self.add_module(f"layer{i}", self._make_layer(planes, blocks, stride=1 if i == 1 else 2))
            if config.apply_attention:
                kernel, padding = _ATTENTION_KERNELS[i - 1]
                self.add_module(f"att{i}", Attention(att_in[i - 1], att_out[i - 1], kernel, padding))
        if config.apply_attention:
            kernel, padding = _ATTENTION_KERNELS[4]
            self.att5 = Attention(att_in[4], att_out[4], kernel, padding)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(config.feature_dim, config.num_classes)
        self.fbsp = LinearFBSP(config.num_bins, config.normalized)
        self._init_parameters()

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | ESResNeXtConfig) -> "ESResNeXtFBSP":
        """Build from an :class:`ESResNeXtConfig` or a stored constructor dict (e.g. a fixture's)."""
        if not isinstance(config, ESResNeXtConfig):
            config = ESResNeXtConfig.from_dict(config)
        return cls(config)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        cfg = self.config
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample, cfg.groups, cfg.width_per_group)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes, 1, None, cfg.groups, cfg.width_per_group)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.config.zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)

    def _as_mono_rows(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() not in (2, 3) or waveform.numel() == 0:
            raise ValueError(
                f"ESResNeXtFBSP expects (B, n) or (B, C, n) waveforms with n > 0, got {tuple(waveform.shape)}"
            )
        return waveform.to(torch.float32).reshape(-1, waveform.shape[-1])  # (B*C, n)

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, n) or (B, C, n) int16-range audio -> (B*C, 3, F//3, n_frames) dB input of conv1, in
        float32 whatever the autocast state (see the module docstring)."""
        with torch.autocast(waveform.device.type, enabled=False):
            return self._spectrogram(waveform)

    def _spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = scale_int16(self._as_mono_rows(waveform))  # (N, n)
        with torch.no_grad():
            frames = frame_signal(x, cfg.win_length, cfg.hop_length, self.window)  # (N, T, win)
            pad = cfg.n_fft - cfg.win_length
            frames = F.pad(frames, (pad // 2, pad - pad // 2))  # (N, T, n_fft)
        spec = self.fbsp(frames).transpose(1, 2)  # (N, F, T, 2)
        power = spec[..., 0] ** 2 + spec[..., 1] ** 2  # (N, F, T)
        band = power.shape[1] // NUM_BANDS
        power = power[:, : band * NUM_BANDS].reshape(power.shape[0], NUM_BANDS, band, power.shape[2])
        power = torch.where(power > 0.0, power, torch.full_like(power, POWER_FLOOR))
        return 10.0 * torch.log10(power)  # (N, 3, F//3, T)

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) dB spectrogram -> (N, feature_dim) attention-gated pooled features."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and min(x.shape[-2:]) < MIN_BF16_SIDE \
                and torch.get_autocast_dtype("cpu") == torch.bfloat16:
            with torch.autocast("cpu", enabled=False):  # see MIN_BF16_SIDE
                return self._backbone(x)
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # (N, 3, H, W), stored channels-last
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        for i, stage in enumerate(stages, start=1):
            y = stage(x)
            if self.config.apply_attention:
                y = y * getattr(self, f"att{i}")(x, y.shape[-2:])
            x = y
        pooled = self.avgpool(x)  # (N, C, 1, 1)
        if self.config.apply_attention:
            pooled = pooled * self.att5(x, pooled.shape[-2:])
        return pooled.flatten(1)  # (N, C)

    def forward_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Pooled features fed to ``fc``, (B, feature_dim); channels of (B, C, n) input are summed."""
        batch = waveform.shape[0]
        features = self._backbone(self.spectrogram(waveform))  # (B*C, D)
        return features.reshape(batch, -1, features.shape[-1]).sum(dim=1)  # (B, D)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, n) or (B, C, n) int16-range waveforms -> (B, num_classes) raw head outputs."""
        return self.fc(self.forward_features(waveform))
