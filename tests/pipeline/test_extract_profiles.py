"""Weight lookup of the paper profile: local files are found before any cache or download."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hcm.pipeline.encoders.efficientnet import EfficientNetSettings, build_efficientnet
from hcm.pipeline.profiles import MissingWeightsError, WeightOptions, get_profile, resolve_weights


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_weights_dir_provides_every_paper_weight(tmp_path: Path, offline: None) -> None:
    folder = tmp_path / "weights"
    (folder / "roberta-large").mkdir(parents=True)
    (folder / "roberta-large" / "config.json").write_text("{}")
    for name in ("efficientnet-b0-355c32eb.pth", "AudioCLIP-Full-Training.pt", "bpe_simple_vocab_16e6.txt.gz"):
        (folder / name).write_bytes(b"x")
    resolved = resolve_weights(get_profile("paper"), WeightOptions(weights_dir=folder))
    assert resolved.roberta == str((folder / "roberta-large").resolve())
    assert resolved.clip == resolved.esresnext == (folder / "AudioCLIP-Full-Training.pt").resolve()
    assert resolved.id_of("clip_image") == "AudioCLIP-Full-Training.pt:1"


def test_only_the_missing_weights_are_named(tmp_path: Path, offline: None) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "ESRNXFBSP.pt").write_bytes(b"x")
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(get_profile("paper"), WeightOptions(weights_dir=folder))
    message = str(error.value)
    assert "ESResNeXt" not in message and "CLIP RN50" in message and "4 missing" in message


def test_efficientnet_b0_loads_a_released_format_state_dict(tmp_path: Path) -> None:
    from efficientnet_pytorch import EfficientNet

    path = tmp_path / "efficientnet-b0-355c32eb.pth"
    reference = EfficientNet.from_name("efficientnet-b0")  # with its classifier, as released
    torch.save(reference.state_dict(), path)
    model = build_efficientnet(EfficientNetSettings(), path, seed=0)
    assert torch.equal(model._conv_stem.weight, reference._conv_stem.weight)
    assert model._conv_head.out_channels == 1280
