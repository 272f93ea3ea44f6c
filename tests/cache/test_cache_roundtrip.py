"""Round trips through a shard: whatever goes in comes back exactly (property tests)."""

from __future__ import annotations

import tempfile

import hypothesis.strategies as st
import numpy as np
import pytest
from cache_synth import assert_items_equal
from hypothesis import HealthCheck, given, settings
from hypothesis.extra.numpy import arrays, from_dtype

from hcm.cache import CacheError, CacheMeta, CacheWriter, FeatureCache, FeatureSpec, Item, verify_cache

DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
JSON_VALUE = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), TEXT)

specs_strategy = st.lists(
    st.builds(FeatureSpec, name=st.sampled_from(["a", "b", "c", "d"]),
              shape=st.lists(st.integers(1, 4), max_size=2).map(tuple), dtype=st.sampled_from(DTYPES)),
    min_size=1, max_size=3, unique_by=lambda spec: spec.name,
)


@st.composite
def item_strategy(draw: st.DrawFn, specs: list[FeatureSpec], index: int) -> Item:
    features = {}
    for spec in specs:
        rows = draw(st.integers(0, 5))  # 0: an empty stream
        elements = from_dtype(np.dtype(spec.dtype), allow_nan=False, allow_infinity=False)
        features[spec.name] = draw(arrays(spec.dtype, (rows, *spec.shape), elements=elements))
    return Item(
        id=f"{draw(TEXT)}#{index}", split=draw(st.sampled_from(["train", "valid", "test"])),
        label=draw(st.floats(allow_nan=False, allow_infinity=False)),
        labels=draw(st.dictionaries(TEXT, JSON_VALUE, max_size=3)), text=draw(TEXT), group=draw(TEXT),
        position=draw(st.integers(0, 2**40)), features=features,
        masks=draw(st.dictionaries(st.sampled_from(["text", "video", "audio"]), st.booleans())),
        notes=draw(st.dictionaries(TEXT, TEXT, max_size=2)),
    )


@st.composite
def shard_strategy(draw: st.DrawFn) -> tuple[list[FeatureSpec], list[Item]]:
    specs = draw(specs_strategy)
    n_items = draw(st.integers(0, 6))
    return specs, [draw(item_strategy(specs, i)) for i in range(n_items)]


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(shard_strategy())
def test_ragged_round_trip(case: tuple[list[FeatureSpec], list[Item]]) -> None:
    specs, items = case
    meta = CacheMeta("synthetic", "prop", "regression", None, {"case": "property"}, specs, shard_size=8)
    with tempfile.TemporaryDirectory() as directory:
        writer = CacheWriter(directory, meta)
        writer.write_shard(0, items, [])
        writer.finalize(len(items))
        assert verify_cache(directory) == []
        with FeatureCache(directory) as cache:
            assert cache.ids == [item.id for item in items]
            assert cache.labels.dtype == np.float64
            for stored, original in zip(cache, items):
                assert_items_equal(stored, original)
            assert cache.meta.recipe_hash == meta.recipe_hash and cache.specs == meta.specs


def test_classification_labels_are_exact_ints(tmp_path) -> None:
    spec = FeatureSpec("x", (3,), "float32")
    meta = CacheMeta("meld", "tiny", "classification", ["neg", "neu", "pos"], {}, [spec], shard_size=4)
    items = [Item(f"dia0_utt{i}", "train", i % 3, {"Sentiment": "neu", "vad": [0.5, 1.25]},
                  features={"x": np.full((i, 3), i, np.float32)}) for i in range(4)]
    writer = CacheWriter(tmp_path, meta)
    writer.write_shard(0, items, [])
    with FeatureCache(tmp_path) as cache:
        assert cache.labels.dtype == np.int64 and cache.labels.tolist() == [0, 1, 2, 0]
        assert isinstance(cache[1].label, int) and cache[1].labels == {"Sentiment": "neu", "vad": [0.5, 1.25]}
    with pytest.raises(CacheError, match="class index"):
        writer.write_shard(1, [Item("bad", "train", 3, features={"x": np.zeros((0, 3))})], [])


def test_float_features_are_stored_in_the_spec_dtype(tmp_path) -> None:
    spec = FeatureSpec("roberta", (4,))  # float16 unless told otherwise
    meta = CacheMeta("mosei", "tiny", "regression", None, {}, [spec], shard_size=2)
    source = np.linspace(-1, 1, 12, dtype=np.float64).reshape(3, 4)
    CacheWriter(tmp_path, meta).write_shard(0, [Item("a", "train", 0.5, features={"roberta": source})], [])
    with FeatureCache(tmp_path) as cache:
        stored = cache[0].features["roberta"]
    assert stored.dtype == np.float16 and np.array_equal(stored, source.astype(np.float16))
