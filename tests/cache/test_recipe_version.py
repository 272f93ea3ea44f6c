"""Caches of another extraction recipe version are refused, for reading and for resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
from cache_synth import make_meta, plan_shard

from hcm.cache import CacheError, CacheWriter, FeatureCache, schema
from hcm.cache.schema import RECIPE_VERSION
from hcm.pipeline.profiles import get_profile


def write(directory: Path, version: int | None) -> None:
    """A 5-item cache as an hcm of recipe ``version`` writes it (``None``: not by ``hcm extract``)."""
    recipe = {"hcm_version": "0.test", "profile": {"recipe_version": version}} if version is not None else {}
    meta = make_meta(shard_size=5, recipe=recipe)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schema, "RECIPE_VERSION", version or RECIPE_VERSION)
        writer = CacheWriter(directory, meta)
        writer.write_shard(0, *plan_shard(meta, 0, 5))
        writer.finalize(5)


def test_the_extraction_profile_records_the_current_version() -> None:
    assert get_profile("tiny").recipe()["recipe_version"] == RECIPE_VERSION == 5


@pytest.mark.parametrize("version", [RECIPE_VERSION - 1, RECIPE_VERSION + 1])
def test_reading_another_version_says_to_re_extract(version: int, tmp_path: Path) -> None:
    write(tmp_path / "old", version)
    with pytest.raises(CacheError, match=rf"recipe version {version} \(hcm 0.test\).*Re-extract it: delete"):
        FeatureCache(tmp_path / "old")


def test_resuming_an_old_cache_says_to_re_extract(tmp_path: Path) -> None:
    write(tmp_path / "old", RECIPE_VERSION - 1)
    current = make_meta(shard_size=5, recipe={"profile": {"recipe_version": RECIPE_VERSION}})
    with pytest.raises(CacheError, match=f"recipe version {RECIPE_VERSION - 1}.*Re-extract"):
        CacheWriter(tmp_path / "old", current)


def test_current_and_unversioned_caches_open(tmp_path: Path) -> None:
    for name, version in (("current", RECIPE_VERSION), ("api", None)):
        write(tmp_path / name, version)
        with FeatureCache(tmp_path / name) as cache:
            assert len(cache) == 5 and cache.meta.recipe_version == version
