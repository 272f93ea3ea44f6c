"""Encoders register themselves on import; a new encoder is one module (tests/helpers/hcm_toy_encoder.py)
that joins the profiles, the weight lookup, the recipe and extraction, and whose weights are
checked by content wherever a cache is reused."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from hcm.cache import CacheError, FeatureCache
from hcm.pipeline.clip import extract_clip
from hcm.pipeline.encoders import base
from hcm.pipeline.encoders.mel import MelSettings
from hcm.pipeline.extract import ExtractionError, extract
from hcm.pipeline.profiles import MissingWeightsError, Profile, Sampling, WeightOptions, get_profile
from hcm.pipeline.sample import make_sample
from hcm.training.evaluate import ProfileMismatchError, check_cache_matches

SMALL = dict(workers=0, batch_size=4, progress=False)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The toy encoder module imported into a copy of the registry (gone again after the test)."""
    monkeypatch.setattr(base, "ENCODERS", base.ENCODERS.copy())
    monkeypatch.delitem(sys.modules, "hcm_toy_encoder", raising=False)
    return importlib.import_module("hcm_toy_encoder")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "mosei"
    make_sample("mosei", root, n=6, seed=5, progress=False)
    return root


def tables(toy: ModuleType, folder: Path, seed: int) -> WeightOptions:
    folder.mkdir(parents=True)
    toy.write_table(folder / toy.TABLE_FILE, seed)
    return WeightOptions(weights_dir=folder)


def toy_and_mel() -> Profile:
    """A small profile of the toy encoder and the weightless Mel frames (quick to extract)."""
    return Profile("tiny", {"toy": base.ENCODERS.get("toy").tiny_settings(), "mel": MelSettings()},
                   sampling=Sampling(frames=2, segments=2, segment_seconds=0.25))


def test_importing_the_package_registers_every_encoder() -> None:
    code = "import hcm.pipeline.encoders as e; print(','.join(e.encoder_names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",") == ["clip_image", "clip_text", "efficientnet", "esresnext", "mel", "roberta"]


def test_names_are_case_insensitive_and_unknown_ones_list_the_known() -> None:
    assert base.encoder_class("RoBERTa") is base.encoder_class("roberta")
    with pytest.raises(KeyError, match="unknown encoder 'bert'; known: clip_image, clip_text"):
        base.encoder_class("bert")


def test_a_toy_encoder_module_joins_the_tiny_profile_and_its_weights_are_looked_up(toy: ModuleType, corpus: Path,
                                                                                    tmp_path: Path) -> None:
    profile = get_profile("tiny")
    assert "toy" in profile.encoders and "toy" not in get_profile("paper").encoders
    assert profile.recipe()["encoders"]["toy"] == {"dim": 4}
    with pytest.raises(MissingWeightsError, match="toy byte table: toy-table.npy not found.*example.invalid"):
        extract("mosei", corpus, tmp_path / "none", profile="tiny", **SMALL)
    assert not (tmp_path / "none").exists()


def test_extraction_with_the_toy_encoder(toy: ModuleType, corpus: Path, tmp_path: Path) -> None:
    weights = tables(toy, tmp_path / "weights", seed=1)
    extract("mosei", corpus, tmp_path / "cache", profile=toy_and_mel(), weights=weights, **SMALL)
    table = np.load(tmp_path / "weights" / toy.TABLE_FILE)
    with FeatureCache(tmp_path / "cache") as cache:
        assert set(cache.specs) == {"toy", "mel"}
        recipe = cache.meta.recipe
        item = next(cache[i] for i in range(len(cache)) if cache[i].masks["text"])
    assert recipe["profile"]["encoders"]["toy"] == {"dim": 4} and recipe["weights"]["mel"] == {}
    assert recipe["weights"]["toy"] == {"toy": "sha256:" + _sha(tmp_path / "weights" / toy.TABLE_FILE)}
    expected = table[list(item.text.strip().encode()[:toy.MAX_BYTES])].astype(np.float16)
    assert np.array_equal(item.features["toy"], expected)


def test_reusing_a_cache_with_other_weights_is_refused_naming_the_encoder(toy: ModuleType, corpus: Path,
                                                                          tmp_path: Path) -> None:
    first, other = tables(toy, tmp_path / "a", seed=1), tables(toy, tmp_path / "b", seed=2)
    extract("mosei", corpus, tmp_path / "cache-a", profile=toy_and_mel(), weights=first, **SMALL)
    extract("mosei", corpus, tmp_path / "cache-b", profile=toy_and_mel(), weights=other, **SMALL)
    with pytest.raises(CacheError, match="other weights: encoder 'toy': toy is sha256:"):  # a resumed extraction
        extract("mosei", corpus, tmp_path / "cache-a", profile=toy_and_mel(), weights=other, **SMALL)
    with FeatureCache(tmp_path / "cache-a") as cache:
        meta = cache.meta
        cached = next(cache[i] for i in range(len(cache)) if all(cache[i].masks.values()))
    video_id, clip_id = cached.id.split("$_$")
    clip = corpus / "Raw" / video_id / f"{clip_id}.mp4"
    with pytest.raises(ExtractionError, match="encoder 'toy'"):  # hcm predict's path
        extract_clip(clip, cached.text, toy_and_mel(), weights=other, device="cpu", like=meta)
    item = extract_clip(clip, cached.text, toy_and_mel(), weights=first, device="cpu", like=meta)
    for name in ("toy", "mel"):  # the same code as hcm extract gives the same features
        assert np.array_equal(item.features[name], cached.features[name])
    config = {"dataset": "mosei", "profile": "tiny", "recipe_hash": meta.recipe_hash,
              "cache": str(tmp_path / "cache-a")}
    with pytest.raises(ProfileMismatchError, match="other weights .*encoder 'toy'"):  # hcm evaluate --features
        check_cache_matches(config, tmp_path / "cache-b")


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
