"""Weight lookup of the paper profile (local files before any cache or download) and the content
ids that identify every weight in the recipe."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from hcm.pipeline.encoders.efficientnet import EfficientNetSettings, build_efficientnet
from hcm.pipeline.profiles import (
    MissingWeightsError,
    RecipeError,
    WeightOptions,
    get_profile,
    profile_from_recipe,
    resolve_weights,
    weights_recipe,
)
from hcm.pipeline.weights import DIGEST_INDEX, DigestIndex, weight_digest

ROBERTA_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def paper_folder(folder: Path) -> Path:
    """Stand-in files of every paper weight, each with its own bytes."""
    (folder / "roberta-large").mkdir(parents=True)
    for name in ROBERTA_FILES:
        (folder / "roberta-large" / name).write_text(f"{name} of roberta")
    for name in ("efficientnet-b0-355c32eb.pth", "AudioCLIP-Full-Training.pt", "bpe_simple_vocab_16e6.txt.gz"):
        (folder / name).write_bytes(name.encode())
    return folder


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_weights_dir_provides_every_paper_weight(tmp_path: Path, offline: None) -> None:
    folder = paper_folder(tmp_path / "weights")
    resolved = resolve_weights(get_profile("paper"), WeightOptions(weights_dir=folder))
    assert resolved.path("roberta") == (folder / "roberta-large").resolve()
    assert resolved.path("clip") == resolved.path("esresnext") == (folder / "AudioCLIP-Full-Training.pt").resolve()
    assert resolved.digests["clip"] == sha(b"AudioCLIP-Full-Training.pt")
    recipe = weights_recipe(get_profile("paper"), resolved)
    assert recipe["clip_text"] == {"clip": resolved.digests["clip"], "clip_vocab": sha(b"bpe_simple_vocab_16e6.txt.gz")}
    assert recipe["clip_image"] == {"clip": resolved.digests["clip"]} and recipe["mel"] == {}
    assert set(recipe["roberta"]) == {"roberta"} and recipe["roberta"]["roberta"].startswith("sha256:")


def test_a_roberta_folder_is_identified_by_its_config_weights_and_tokenizer(tmp_path: Path, offline: None) -> None:
    folder = paper_folder(tmp_path / "weights") / "roberta-large"
    first = weight_digest(folder)
    (folder / "README.md").write_text("not part of the model")
    assert weight_digest(folder) == first
    copy = tmp_path / "elsewhere" / "my-roberta"
    copy.mkdir(parents=True)
    for name in ROBERTA_FILES:
        (copy / name).write_bytes((folder / name).read_bytes())
    assert weight_digest(copy) == first  # the content counts, not the folder's name or place
    (copy / "merges.txt").write_text("other merges")
    assert weight_digest(copy) != first


def test_digests_are_computed_once_and_again_when_the_file_changes(tmp_path: Path, offline: None) -> None:
    weight = tmp_path / "w.pt"
    weight.write_bytes(b"first")
    assert weight_digest(weight) == sha(b"first")
    index_file = tmp_path / "xdg" / "hcm" / DIGEST_INDEX
    entries = json.loads(index_file.read_text())
    assert entries[str(weight.resolve())]["sha256"] == hashlib.sha256(b"first").hexdigest()
    entries[str(weight.resolve())]["sha256"] = "0" * 64  # a remembered digest is used as it is
    index_file.write_text(json.dumps(entries))
    assert weight_digest(weight) == "sha256:" + "0" * 64
    weight.write_bytes(b"second, longer")  # another size: recomputed
    assert weight_digest(weight) == sha(b"second, longer")
    assert DigestIndex(None).digest(weight) == sha(b"second, longer")  # no index at all also works


def test_only_the_missing_weights_are_named(tmp_path: Path, offline: None) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "ESRNXFBSP.pt").write_bytes(b"x")
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(get_profile("paper"), WeightOptions(weights_dir=folder))
    message = str(error.value)
    assert "ESResNeXt" not in message and "CLIP RN50" in message and "4 missing" in message
    assert "--clip-weights" in message and "--efficientnet-weights" in message and "--roberta" in message


def test_a_weight_option_that_names_no_file_is_reported(tmp_path: Path, offline: None) -> None:
    folder = paper_folder(tmp_path / "weights")
    options = WeightOptions(folder, {"clip": tmp_path / "nowhere" / "RN50.pt"})
    with pytest.raises(MissingWeightsError, match="--clip-weights .*nowhere/RN50.pt is not a file"):
        resolve_weights(get_profile("paper"), options)


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_profile_from_recipe_rebuilds_the_profile(name: str) -> None:
    profile = get_profile(name, frames=3, segments=2)
    recipe = {"profile": json.loads(json.dumps(profile.recipe()))}
    assert profile_from_recipe(recipe) == profile


def test_the_recipe_records_stage_one_choices_with_reasons() -> None:
    recipe = json.loads(json.dumps(get_profile("paper").recipe()))
    choices = recipe["hcm_choices"]
    assert {"text_encoder", "video_encoder", "frames", "segments", "mel", "clip_text", "streams"} <= set(choices)
    assert all(reason.strip() for reason in choices.values())
    del recipe["hcm_choices"]  # a cache extracted before the choices were recorded still rebuilds
    assert profile_from_recipe({"profile": recipe}) == get_profile("paper")


def test_profile_from_recipe_names_what_it_builds_differently() -> None:
    recipe = {"profile": json.loads(json.dumps(get_profile("tiny").recipe())), "hcm_version": "0.0"}
    recipe["profile"]["encoders"]["mel"]["n_mels"] = 64
    with pytest.raises(RecipeError, match=r"differs in \['encoders'\]; encoders \['mel'\]"):
        profile_from_recipe(recipe)
    with pytest.raises(RecipeError, match="names no profile"):
        profile_from_recipe({"profile": {"name": "huge"}})


def test_efficientnet_b0_loads_a_released_format_state_dict(tmp_path: Path) -> None:
    from efficientnet_pytorch import EfficientNet

    path = tmp_path / "efficientnet-b0-355c32eb.pth"
    reference = EfficientNet.from_name("efficientnet-b0")  # with its classifier, as released
    torch.save(reference.state_dict(), path)
    model = build_efficientnet(EfficientNetSettings(), path, seed=0)
    assert torch.equal(model._conv_stem.weight, reference._conv_stem.weight)
    assert model._conv_head.out_channels == 1280
