"""The reader: selections, DataLoader workers, pickling, and clear errors on damaged caches."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cache_synth import assert_items_equal, synthetic_item
from torch.utils.data import DataLoader

from hcm.cache import CacheError, FeatureCache, Item, verify_cache
from hcm.cache import reader as reader_module

EXPECTED_IDS = [synthetic_item(i).id for i in range(23) if i % 7 != 6]


def _as_list(batch: list[Item]) -> list[Item]:
    return batch


def test_reads_every_item_in_plan_order(cache_dir: Path, open_cache) -> None:
    cache = open_cache(cache_dir)
    assert cache.ids == EXPECTED_IDS and len(cache) == 20
    assert cache.counts == {"test": 6, "train": 7, "valid": 7}
    for i, item in zip([i for i in range(23) if i % 7 != 6], cache):
        expected = synthetic_item(i)
        expected.features = {name: np.asarray(v).astype(cache.specs[name].dtype)
                             for name, v in expected.features.items()}
        assert_items_equal(item, expected)
    assert_items_equal(cache[-1], cache[19])
    with pytest.raises(IndexError):
        cache[20]


def test_split_and_feature_selection(cache_dir: Path, open_cache) -> None:
    cache = open_cache(cache_dir, split=["valid", "test"], features=["mel"])
    assert len(cache) == 13 and {cache[i].split for i in range(len(cache))} == {"valid", "test"}
    assert set(cache.get(cache.ids[3]).features) == {"mel"}
    labels = [cache[i].label for i in range(len(cache))]
    assert cache.labels.dtype == np.float64 and cache.labels.tolist() == labels
    with pytest.raises(KeyError, match="not in cache"):
        cache.get(synthetic_item(0).id)  # a train item
    with pytest.raises(CacheError, match="no items of split \\['dev'\\]"):
        FeatureCache(cache_dir, split="dev")
    with pytest.raises(CacheError, match="no feature \\['clip_text'\\]"):
        FeatureCache(cache_dir, features=["clip_text"])


def test_labels_and_ids_need_no_feature_reads(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("feature data was opened")

    monkeypatch.setattr(reader_module, "ShardReader", refuse)
    cache = FeatureCache(cache_dir, split="train")
    assert len(cache.labels) == len(cache.ids) == 7


def test_in_memory_matches_on_disk(cache_dir: Path, open_cache) -> None:
    on_disk, in_memory = open_cache(cache_dir), open_cache(cache_dir, in_memory=True)
    for a, b in zip(on_disk, in_memory):
        assert_items_equal(a, b)


def test_pickled_cache_reads_the_same(cache_dir: Path, open_cache) -> None:
    cache = open_cache(cache_dir)
    first = cache[0]  # opens HDF5 handles, which must not travel
    clone = pickle.loads(pickle.dumps(cache))
    assert_items_equal(clone[0], first)
    clone.close()


@pytest.mark.parametrize("in_memory", [False, True])
def test_dataloader_with_two_workers(cache_dir: Path, open_cache, in_memory: bool) -> None:
    cache = open_cache(cache_dir, in_memory=in_memory)
    expected = {item.id: item for item in cache}  # handles now open in the parent before the fork
    loader = DataLoader(cache, batch_size=3, shuffle=True, num_workers=2, collate_fn=_as_list,
                        generator=torch.Generator().manual_seed(0))
    seen = [item for batch in loader for item in batch]
    assert sorted(item.id for item in seen) == sorted(expected)
    for item in seen:
        assert_items_equal(item, expected[item.id])


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_flipped_data_byte_fails_verify_and_the_read(cache_dir: Path) -> None:
    path = cache_dir / "shard-00000.h5"
    with h5py.File(path, "r") as f:
        offset = f["features/roberta/data"].id.get_chunk_info(0).byte_offset + 3
    _flip_byte(path, offset)
    problems = verify_cache(cache_dir)
    assert any("shard-00000.h5: sha256 differs" in p for p in problems)
    cache = FeatureCache(cache_dir)  # the index does not touch feature data
    with pytest.raises(CacheError, match=r"shard-00000\.h5 has unreadable data in feature 'roberta'"):
        for i in range(5):
            cache[i]
    cache.close()


@pytest.mark.parametrize("damage", ["truncate", "superblock"])
def test_unparsable_shard_raises_a_clear_error(cache_dir: Path, damage: str) -> None:
    path = cache_dir / "shard-00001.h5"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        _flip_byte(path, 0)
    with pytest.raises(CacheError) as err:
        FeatureCache(cache_dir)
    message = str(err.value)
    assert str(path) in message and "hcm cache verify" in message and "re-run" in message
    assert any(p.startswith("shard-00001.h5:") for p in verify_cache(cache_dir))


def test_shard_disagreeing_with_manifest(cache_dir: Path) -> None:
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    manifest["features"][0]["dtype"] = "float32"
    manifest["recipe_hash"] = "0" * 64
    (cache_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="does not match .*manifest.json.*recipe hash"):
        FeatureCache(cache_dir)
    problems = verify_cache(cache_dir)
    assert any("feature 'roberta' is float16[16], the manifest says float32[16]" in p for p in problems)


def test_missing_shard_and_schema_version(cache_dir: Path) -> None:
    (cache_dir / "shard-00002.h5").unlink()
    with pytest.raises(CacheError, match="shard-00002.h5 is listed in the manifest but missing"):
        FeatureCache(cache_dir)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (cache_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="schema version 99"):
        FeatureCache(cache_dir)


def test_not_a_cache(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="not an hcm cache"):
        FeatureCache(tmp_path)
    with pytest.raises(CacheError, match="does not exist"):
        FeatureCache(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{ half")
    with pytest.raises(CacheError, match="manifest.json cannot be parsed"):
        FeatureCache(tmp_path)
