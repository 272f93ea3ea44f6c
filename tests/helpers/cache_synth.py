"""A small deterministic synthetic extraction for the cache tests (and their subprocesses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcm.cache import CacheMeta, CacheWriter, Failure, FeatureSpec, Item

SPECS = [
    FeatureSpec("roberta", (16,), "float16", "roberta", "roberta-large", {"window": 2}),
    FeatureSpec("token_word", (), "int32", "spacy", "en_core_web_sm", {}),
    FeatureSpec("text_edges", (2,), "int32", "spacy", "en_core_web_sm", {}),
    FeatureSpec("mel", (8,), "float16", "librosa", "-", {"sr": 16000}),
]


def synthetic_item(i: int, seed: int = 0) -> Item:
    """Item ``i`` of a deterministic synthetic dataset (some streams empty, masks varying)."""
    rng = np.random.default_rng([seed, i])
    n_tok, n_mel = int(rng.integers(0, 7)), int(rng.integers(0, 12))
    return Item(
        id=f"vid{i // 3}$_${i % 3}", split=("train", "valid", "test")[i % 3], label=float(rng.normal()),
        labels={"label_T": float(rng.normal()), "annotation": "Positive"}, text=f"utterance {i} ünïcode",
        group=f"vid{i // 3}", position=i % 3,
        features={
            "roberta": rng.standard_normal((n_tok, 16)).astype(np.float32),
            "token_word": np.arange(n_tok, dtype=np.int64) - 1,
            "text_edges": rng.integers(0, max(n_tok, 1), (max(n_tok - 1, 0), 2)),
            "mel": rng.standard_normal((n_mel, 8)),
        },
        masks={"text": n_tok > 0, "video": False, "audio": n_mel > 0},
        notes={"truncated": "no"} if i % 4 else {},
    )


def plan_shard(meta: CacheMeta, k: int, n_planned: int, seed: int = 0) -> tuple[list[Item], list[Failure]]:
    """Shard ``k`` of a plan of ``n_planned`` synthetic items; every 7th planned item fails."""
    positions = range(k * meta.shard_size, min((k + 1) * meta.shard_size, n_planned))
    items = [synthetic_item(i, seed) for i in positions if i % 7 != 6]
    failures = [Failure(synthetic_item(i, seed).id, f"no audio stream in clip {i}") for i in positions if i % 7 == 6]
    return items, failures


def make_meta(shard_size: int = 5, recipe: dict | None = None) -> CacheMeta:
    return CacheMeta("mosei", "tiny", "regression", None, recipe or {"fps": 1, "window": 2}, list(SPECS), shard_size)


def write_cache(directory: Path, n_planned: int = 23, shard_size: int = 5, seed: int = 0) -> CacheMeta:
    meta = make_meta(shard_size)
    writer = CacheWriter(directory, meta)
    for k in range(meta.n_shards(n_planned)):
        writer.write_shard(k, *plan_shard(meta, k, n_planned, seed))
    writer.finalize(n_planned)
    return meta


def assert_items_equal(a: Item, b: Item) -> None:
    assert (a.id, a.split, a.label, a.labels, a.text, a.group, a.position, a.masks, a.notes) == (
        b.id, b.split, b.label, b.labels, b.text, b.group, b.position, b.masks, b.notes)
    assert a.features.keys() == b.features.keys()
    for name in a.features:
        x, y = np.asarray(a.features[name]), np.asarray(b.features[name])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
