"""Fixtures for the cache tests: a finished synthetic cache and a closing opener."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from cache_synth import write_cache

from hcm.cache import FeatureCache


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A finished 23-item cache (shards of 5, items 6, 13, 20 failed)."""
    directory = tmp_path / "cache"
    write_cache(directory)
    return directory


@pytest.fixture
def open_cache() -> Iterator[Callable[..., FeatureCache]]:
    opened: list[FeatureCache] = []

    def _open(*args, **kwargs) -> FeatureCache:
        opened.append(FeatureCache(*args, **kwargs))
        return opened[-1]

    yield _open
    for cache in opened:
        cache.close()
