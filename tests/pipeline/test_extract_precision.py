"""The encoders' precision in a cache: recorded in the recipe, shown by ``hcm cache info``, kept by a
resumed extraction, and noted when a one-clip extraction (``hcm predict``) computes another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hcm.cache import CacheError
from hcm.cache.inspect import cache_info, format_info
from hcm.cache.reader import FeatureCache
from hcm.cache.schema import recipe_precision
from hcm.pipeline.clip import ClipExtractor
from hcm.pipeline.extract import extract
from hcm.pipeline.profiles import profile_from_recipe
from hcm.pipeline.sample import make_sample

FAST = dict(profile="tiny", frames=2, segments=2, batch_size=4, shard_size=3, workers=0, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "mosei"
    make_sample("mosei", root, n=6, seed=5, progress=False)
    return root


@pytest.fixture(scope="module")
def bf16_cache(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bf16") / "cache"
    summary = extract("mosei", corpus, out, precision="bfloat16", **FAST)
    assert summary.precision == "bfloat16" and "(tiny, bfloat16)" in summary.format()
    return out


def recipe(cache: Path) -> dict:
    return json.loads((cache / "manifest.json").read_text())["recipe"]


@pytest.mark.slow
def test_the_precision_is_in_the_recipe_and_cache_info(bf16_cache: Path, corpus: Path, tmp_path: Path) -> None:
    assert recipe(bf16_cache)["precision"] == "bfloat16"
    info = cache_info(bf16_cache)
    assert info["precision"] == "bfloat16" and "precision  bfloat16" in format_info(info)
    default = extract("mosei", corpus, tmp_path / "auto", limit=2, **FAST)
    assert default.precision == "float32" and recipe(tmp_path / "auto")["precision"] == "float32"  # tiny: float32


@pytest.mark.slow
def test_a_resume_keeps_the_caches_precision(bf16_cache: Path, corpus: Path) -> None:
    with pytest.raises(CacheError, match=r"precision bfloat16 -> float32"):
        extract("mosei", corpus, bf16_cache, precision="float32", **FAST)
    again = extract("mosei", corpus, bf16_cache, **FAST)  # auto: the cache's own precision
    assert again.precision == "bfloat16" and again.shards.resumed == again.shards.mine == 2


def test_recipes_without_the_field_read_as_float32() -> None:
    assert recipe_precision({"profile": {"name": "tiny"}}) == "float32"
    assert recipe_precision({"profile": {"name": "paper"}, "precision": "float16"}) == "float16"
    assert recipe_precision({"source": {"format": "mmsa"}}) is None  # an import: no encoders ran


@pytest.mark.slow
def test_one_clip_extraction_follows_the_cache_and_notes_another_precision(bf16_cache: Path, corpus: Path) -> None:
    with FeatureCache(bf16_cache) as cache:
        meta = cache.meta
    profile = profile_from_recipe(meta.recipe)
    same = ClipExtractor(profile, device="cpu", like=meta)
    assert same.precision == "bfloat16" and same.notes == []
    other = ClipExtractor(profile, device="cpu", like=meta, precision="float32")
    assert other.precision == "float32"
    (note,) = other.notes
    assert "computed in float32" in note and "extracted in bfloat16" in note
