"""Output shapes and dtypes of every registered encoder at the tiny profile, on synthetic inputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hcm.pipeline.encoders import create_encoder, encoder_names
from hcm.pipeline.profiles import ResolvedWeights, get_profile

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def profile():
    return get_profile("tiny", frames=3, segments=2)


def media_for(preparer) -> np.ndarray:
    if preparer.modality == "video":
        return RNG.integers(0, 256, size=(3, 48, 80, 3), dtype=np.uint8)  # (T, H, W, 3), not square
    return (RNG.standard_normal(preparer.sample_rate // 2) * 0.1).astype(np.float32)  # 0.5 s


@pytest.mark.parametrize("name", [n for n in encoder_names() if n != "roberta"])
def test_encoder_shapes_and_dtypes(name: str, profile) -> None:
    assert name in profile.encoders
    encoder = create_encoder(name, profile, ResolvedWeights(), "cpu")
    utterances = [SimpleNamespace(text="I liked it"), SimpleNamespace(text="no")]
    prepared = [encoder.preparer(media_for(encoder.preparer)) for _ in utterances] if encoder.preparer else [None] * 2
    outputs = encoder.encode(utterances, prepared)
    rows = {"clip_text": 1, "efficientnet": 3, "clip_image": 3, "esresnext": 2, "mel": 1 + 8000 // 160}
    for spec in encoder.outputs:
        for output in outputs:
            array = output.features[spec.name]
            assert array.dtype == np.dtype(spec.dtype) and array.shape == (rows[name], *spec.shape)
            assert np.isfinite(array.astype(np.float32)).all()
        assert encoder.empty()[spec.name].shape == (0, *spec.shape)
    again = create_encoder(name, profile, ResolvedWeights(), "cpu").encode(utterances, prepared)
    assert all(np.array_equal(a.features[k], b.features[k]) for a, b in zip(outputs, again) for k in a.features)


def test_tiny_dims(profile) -> None:
    dims = {spec.name: spec.shape for name in profile.encoders
            for spec in create_encoder(name, profile, ResolvedWeights(), "cpu").outputs}
    assert dims["efficientnet"] == (320,) and dims["mel"] == (128,) and dims["clip_image"] == (64,)


def test_tiny_vision_and_audio_networks_keep_their_signal() -> None:
    """Random tiny networks with fresh BatchNorm statistics let activations vanish in eval mode;
    the calibrated ones give features that differ clearly from input to input."""
    from hcm.pipeline.encoders.audio import build_esresnext, tiny_settings
    from hcm.pipeline.encoders.efficientnet import EfficientNetSettings, build_efficientnet
    from hcm.pipeline.encoders.image import build_clip, tiny_clip_settings

    generator = torch.Generator().manual_seed(0)
    efficientnet = build_efficientnet(EfficientNetSettings(model="tiny", image_size=64), None, seed=0)
    clip = build_clip(tiny_clip_settings(), None, seed=0)
    audio = build_esresnext(tiny_settings(), None, seed=0)
    side = tiny_clip_settings().config.image_resolution
    with torch.no_grad():
        outputs = {
            "efficientnet": efficientnet.extract_features(torch.randn(4, 3, 64, 64, generator=generator)).mean((2, 3)),
            "clip": clip.encode_image(torch.randn(4, 3, side, side, generator=generator)),
            "esresnext": audio(torch.randn(4, 11025, generator=generator) * 3000.0),
        }
    for name, features in outputs.items():
        assert not efficientnet.training and not clip.training and not audio.training
        spread = features.std(dim=0).mean().item()  # across inputs
        assert spread > 1e-2 * features.abs().mean().item() and spread > 1e-3, (name, spread)


def test_esresnext_batches_clips_of_different_lengths(profile, one_thread: None) -> None:
    """Long clips get longer segments; a mixed batch gives each clip what it gets alone."""
    encoder = create_encoder("esresnext", profile, ResolvedWeights(), "cpu")
    rate = encoder.preparer.sample_rate
    waves = [(RNG.standard_normal(int(rate * seconds)) * 0.1).astype(np.float32) for seconds in (0.3, 2.0, 0.35)]
    prepared = [encoder.preparer(wave) for wave in waves]
    assert [p.shape[1] for p in prepared] == [int(rate * 0.25), -(-2 * int(rate * 2.0) // 3), int(rate * 0.25)]
    together = encoder.encode([None] * 3, prepared)
    for segments, output in zip(prepared, together):
        alone = encoder.encode([None], [segments])[0].features["esresnext"]
        assert output.features["esresnext"].shape == (2, *encoder.outputs[0].shape)
        np.testing.assert_allclose(output.features["esresnext"].astype(np.float32), alone.astype(np.float32),
                                   rtol=1e-2, atol=1e-2)
