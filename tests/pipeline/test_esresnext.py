"""ESResNeXt-FBSP audio encoder against the reference fixture and its front-end conventions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hcm.pipeline.encoders.esresnext import (
    ESResNeXtConfig,
    ESResNeXtFBSP,
    LinearFBSP,
    frame_signal,
    released_config,
    scale_int16,
    tiny_config,
)


@pytest.fixture(scope="module")
def audio_fixture(shared_fixtures: Path) -> dict:
    return torch.load(shared_fixtures / "esresnext_tiny.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def fixture_outputs(audio_fixture: dict) -> dict[str, torch.Tensor]:
    model = ESResNeXtFBSP.from_config(audio_fixture["config"])
    model.load_state_dict(audio_fixture["state_dict"], strict=True)
    model.eval()
    assert list(model.state_dict()) == list(audio_fixture["state_dict"])
    with torch.no_grad():
        db = model.spectrogram(audio_fixture["waveform"])
        pooled = model.forward_features(audio_fixture["waveform"])
        embedding = model.fc(pooled)  # forward() == fc(forward_features()): see the multichannel test
    return {"db": db, "pooled": pooled, "embedding": embedding}


def test_embedding_matches_fixture(audio_fixture: dict, fixture_outputs: dict) -> None:
    torch.testing.assert_close(fixture_outputs["embedding"], audio_fixture["embedding"], atol=1e-3, rtol=0)


def test_pooled_features_match_fixture(audio_fixture: dict, fixture_outputs: dict) -> None:
    reference = audio_fixture["intermediates"]["fc_input_pooled"]
    torch.testing.assert_close(fixture_outputs["pooled"], reference, atol=1e-3, rtol=0)


def test_conv1_input_matches_fixture(audio_fixture: dict, fixture_outputs: dict) -> None:
    reference = audio_fixture["intermediates"]["conv1_input_db"]  # (B, 3, 341, 77)
    db = fixture_outputs["db"]
    assert db.shape == reference.shape == (2, 3, 341, 77)
    # Bins with real power (within 80 dB of the peak) agree tightly; the few quietest bins are
    # limited by float32 rounding of the kernels (the float64 original differs there by <= 0.18 dB).
    real_power = reference > reference.max() - 80.0
    assert real_power.float().mean() > 0.99
    torch.testing.assert_close(db[real_power], reference[real_power], atol=5e-3, rtol=0)
    torch.testing.assert_close(db, reference, atol=0.2, rtol=0)


def test_int16_scaling_is_affine() -> None:
    x = torch.tensor([-32768.0, 0.0, 32767.0])
    torch.testing.assert_close(scale_int16(x), torch.tensor([-1.0, 1.0 / 65535, 1.0]), atol=1e-7, rtol=0)


def test_framing_pads_floor_half_left() -> None:
    signal = torch.arange(1, 11, dtype=torch.float32)[None]  # (1, 10)
    frames = frame_signal(signal, frame_length=4, hop_length=3, window=torch.ones(4))
    # n_frames = 1 + ceil((10 - 4) / 3) = 3; padding (3-1)*3 + 4 - 10 = 0
    assert frames.shape == (1, 3, 4) and frames[0, 2].tolist() == [7, 8, 9, 10]
    frames = frame_signal(signal, frame_length=4, hop_length=4, window=torch.ones(4))
    # n_frames = 1 + ceil(6 / 4) = 3; padding 2*4 + 4 - 10 = 2 -> 1 left, 1 right
    assert frames[0, 0].tolist() == [0, 1, 2, 3] and frames[0, 2].tolist() == [8, 9, 10, 0]
    short = frame_signal(signal[:, :3], frame_length=6, hop_length=2, window=torch.arange(6.0))
    assert short.shape == (1, 1, 6) and short[0, 0].tolist() == [0, 1, 4, 9, 0, 0]


def test_fbsp_at_initialisation_is_a_scaled_dft() -> None:
    n_fft = 64
    layer = LinearFBSP(n_fft // 2 + 1, normalized=True)  # m=0, fb=1, fc=k: window 1, plain DFT
    frames = torch.randn(2, 5, n_fft, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        spectrum = layer(frames)  # (2, 5, 33, 2)
    t = np.pi * np.linspace(-1.0, 1.0, n_fft) + 1e-8
    kernel = np.exp(-1j * np.outer(np.arange(n_fft // 2 + 1), t)) / math.sqrt(n_fft)  # (33, n_fft)
    expected = frames.double().numpy() @ kernel.T
    np.testing.assert_allclose(spectrum[..., 0].numpy(), expected.real, atol=2e-4)
    np.testing.assert_allclose(spectrum[..., 1].numpy(), expected.imag, atol=2e-4)


def test_multichannel_input_sums_pooled_features() -> None:
    torch.manual_seed(0)
    model = ESResNeXtFBSP(tiny_config()).eval()
    waveform = torch.randn(1, 2, 8000) * 3000.0  # (B, C, n)
    with torch.no_grad():
        summed = model.forward_features(waveform)
        per_channel = model.forward_features(waveform[0])  # the two channels as a batch
        output = model(waveform)
    torch.testing.assert_close(summed[0], per_channel.sum(dim=0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(output, model.fc(summed))
    assert output.shape == (1, 64) and summed.shape == (1, tiny_config().feature_dim)


def test_short_input_gives_one_frame() -> None:
    torch.manual_seed(0)
    model = ESResNeXtFBSP(tiny_config(num_classes=8)).eval()
    with torch.no_grad():
        db = model.spectrogram(torch.full((1, 100), 1000.0))
        out = model(torch.full((1, 100), 1000.0))
    assert db.shape == (1, 3, 341, 1) and out.shape == (1, 8) and torch.isfinite(out).all()


def test_default_config_is_the_released_model() -> None:
    config = released_config()
    assert config.layers == (3, 4, 6, 3) and config.num_classes == 1024 and config.base_width == 64
    assert config.feature_dim == 2048 and config.num_bins == 1025


def test_config_and_input_errors(audio_fixture: dict) -> None:
    with pytest.raises(ValueError, match="spec_height"):
        ESResNeXtFBSP.from_config({**audio_fixture["config"], "spec_height": 224, "spec_width": 224})
    with pytest.raises(ValueError, match="unknown ESResNeXtConfig key"):
        ESResNeXtConfig.from_dict({"layer": [1, 1, 1, 1]})
    with pytest.raises(ValueError, match="base_width"):
        ESResNeXtConfig(base_width=8)
    model = ESResNeXtFBSP(tiny_config())
    with pytest.raises(ValueError, match=r"\(B, n\) or \(B, C, n\)"):
        model(torch.zeros(4000))


def test_inference_kernels_follow_parameter_updates() -> None:
    fbsp = LinearFBSP(out_features=33, normalized=True)
    frames = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = fbsp(frames)
        assert torch.equal(first, fbsp(frames))  # served from the cache
        fbsp.m.add_(0.7)  # in place, as load_state_dict and optimizers do
        updated = fbsp(frames)
    assert not torch.allclose(first, updated)
    expected = torch.stack([torch.nn.functional.linear(frames, k) for k in fbsp.kernels(64, frames.dtype)], -1)
    torch.testing.assert_close(updated, expected.detach())
