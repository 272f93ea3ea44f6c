"""Loading weight files in the released formats (TorchScript RN50.pt, AudioCLIP, ESRNXFBSP)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from hcm.pipeline.encoders.checkpoints import (
    CheckpointError,
    infer_clip_config,
    infer_esresnext_config,
    is_torchscript_archive,
    load_clip,
    load_esresnext,
    read_state_dict,
    split_audioclip_state_dict,
)
from hcm.pipeline.encoders.clip import CLIP, CLIPConfig, rn50_config
from hcm.pipeline.encoders.esresnext import ESResNeXtConfig, ESResNeXtFBSP, released_config

# Text width 128 -> 2 heads, so the OpenAI width // 64 rule infers this config exactly.
SMALL_CLIP = CLIPConfig(embed_dim=32, image_resolution=64, vision_layers=(1, 2, 1, 1), vision_width=8,
                        context_length=77, vocab_size=514, transformer_width=128, transformer_heads=2,
                        transformer_layers=1)
SMALL_AUDIO = ESResNeXtConfig(layers=(1, 1, 2, 1), num_classes=16, base_width=16)


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def small_clip() -> CLIP:
    return _randomised(CLIP(SMALL_CLIP), seed=1)


@pytest.fixture(scope="module")
def small_audio() -> ESResNeXtFBSP:
    return _randomised(ESResNeXtFBSP(SMALL_AUDIO), seed=2)


def _assert_same_weights(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype), key
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


def test_torchscript_rn50_style_archive(tmp_path: Path, small_clip: CLIP, standin: ModuleType,
                                       monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the weight digest index
    half = CLIP(SMALL_CLIP)
    half.load_state_dict(small_clip.state_dict())
    half = half.half()
    scripted = torch.jit.trace(standin.ReleasedClipArchive(half), torch.zeros(1))  # OpenAI's archive layout
    path = tmp_path / "RN50.pt"
    torch.jit.save(scripted, str(path))
    assert is_torchscript_archive(path)
    raw = read_state_dict(path)
    assert raw["visual.conv1.weight"].dtype == torch.float16 and "input_resolution" in raw
    assert "is not OpenAI's released RN50.pt" in caplog.text  # read all the same, with a warning
    index = json.loads((tmp_path / "xdg" / "hcm" / "weight-digests.json").read_text())
    assert str(path.resolve()) in index  # hashed once through extraction's digest index

    model = load_clip(path)  # config inferred from the shapes
    assert model.config == SMALL_CLIP and not model.training
    _assert_same_weights(model, half.state_dict())
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :3] = torch.tensor([512, 70, 513])
    with torch.no_grad():
        assert torch.isfinite(model.encode_text(tokens)).all()


def test_audioclip_combined_file(tmp_path: Path, small_clip: CLIP, small_audio: ESResNeXtFBSP) -> None:
    combined = dict(small_clip.state_dict())
    combined.update({f"audio.{k}": v for k, v in small_audio.state_dict().items()})
    combined["logit_scale_ai"] = torch.tensor(4.6)
    combined["logit_scale_at"] = torch.tensor(4.6)
    path = tmp_path / "AudioCLIP-Full-Training.pt"
    torch.save(combined, path)
    assert not is_torchscript_archive(path)

    clip_part, audio_part = split_audioclip_state_dict(combined)
    assert set(clip_part) == set(small_clip.state_dict())
    assert set(audio_part) == set(small_audio.state_dict())

    clip = load_clip(path)
    audio = load_esresnext(path, config=SMALL_AUDIO.to_dict())
    _assert_same_weights(clip, small_clip.state_dict())
    _assert_same_weights(audio, small_audio.state_dict())
    waveform = torch.randn(1, 6000, generator=torch.Generator().manual_seed(0)) * 2000.0
    with torch.no_grad():
        torch.testing.assert_close(audio(waveform), small_audio(waveform))


def test_esrnxfbsp_style_file(tmp_path: Path, small_audio: ESResNeXtFBSP) -> None:
    path = tmp_path / "ESRNXFBSP.pt"
    torch.save(small_audio.state_dict(), path)
    assert small_audio.state_dict()["fbsp.bias"].shape == (0,)  # empty, unused, still a key
    model = load_esresnext(path)
    assert model.config == SMALL_AUDIO
    _assert_same_weights(model, small_audio.state_dict())


def test_errors_name_file_and_keys(tmp_path: Path, small_audio: ESResNeXtFBSP, small_clip: CLIP) -> None:
    state = dict(small_audio.state_dict())
    del state["att2.bn.running_var"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"broken\.pt.*missing keys \[att2\.bn\.running_var\]"):
        load_esresnext(path)

    torch.save(small_audio.state_dict(), path)
    wrong = {**SMALL_AUDIO.to_dict(), "num_classes": 10}
    mismatch = r"broken\.pt.*fc\.weight: file \(16, 512\) vs model \(10, 512\)"
    with pytest.raises(CheckpointError, match=mismatch):
        load_esresnext(path, config=wrong)

    with pytest.raises(CheckpointError, match="not a CLIP ResNet state dict"):
        load_clip(path)  # an audio-only file given as CLIP weights

    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt"):
        read_state_dict(tmp_path / "notes.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_state_dict(tmp_path / "missing.pt")


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[list[int], str]]:
    return {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}


def _reference(path: Path) -> dict[str, tuple[list[int], str]]:
    return {k: (v["shape"], v["dtype"]) for k, v in json.loads(path.read_text()).items()}


@pytest.fixture(scope="module")
def full_size_states() -> tuple[dict, dict]:
    with torch.device("meta"):
        clip = CLIP(rn50_config())
        audio = ESResNeXtFBSP(released_config())
    return clip.state_dict(), audio.state_dict()


def test_full_size_audioclip_keys_and_shapes(shared_fixtures: Path, full_size_states: tuple) -> None:
    clip_state, audio_state = full_size_states
    ours = _shapes(clip_state)
    ours.update({f"audio.{k}": v for k, v in _shapes(audio_state).items()})
    ours["logit_scale_ai"] = ours["logit_scale_at"] = ([], "float32")
    reference = _reference(shared_fixtures / "audioclip_state_dict_shapes.json")
    assert set(ours) == set(reference)
    assert ours == reference


def test_full_size_esrnxfbsp_keys_and_shapes(shared_fixtures: Path, full_size_states: tuple) -> None:
    _, audio_state = full_size_states
    assert _shapes(audio_state) == _reference(shared_fixtures / "esrnxfbsp_state_dict_shapes.json")


def test_full_size_configs_are_inferred(full_size_states: tuple) -> None:
    clip_state, audio_state = full_size_states
    assert infer_clip_config(clip_state) == rn50_config()
    assert infer_esresnext_config(audio_state) == released_config()
