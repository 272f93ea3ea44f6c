"""Subprocess for the kill test: writes a synthetic cache shard by shard, resuming what exists.

Usage: python cache_kill_child.py DIRECTORY N_PLANNED SHARD_SIZE
Prints ``writing K`` before each shard so the parent can time its SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from hcm.cache import CacheMeta, CacheWriter, FeatureSpec, Item

SPECS = [FeatureSpec("roberta", (512,), "float16", "roberta", "roberta-large", {}),
         FeatureSpec("token_word", (), "int32", "spacy", "en_core_web_sm", {})]


def item(i: int) -> Item:
    rng = np.random.default_rng(i)
    n = int(rng.integers(0, 80))
    return Item(f"clip{i}", ("train", "valid", "test")[i % 3], float(i) / 7, {"i": i}, f"text {i}", f"g{i // 4}",
                i % 4, {"roberta": rng.standard_normal((n, 512)), "token_word": np.arange(n)}, {"text": n > 0}, {})


def main(directory: Path, n_planned: int, shard_size: int) -> None:
    meta = CacheMeta("synthetic", "kill", "regression", None, {"seed": 0}, SPECS, shard_size)
    writer = CacheWriter(directory, meta)
    for k in range(meta.n_shards(n_planned)):
        if writer.shard_done(k):
            continue
        print(f"writing {k}", flush=True)
        positions = range(k * shard_size, min((k + 1) * shard_size, n_planned))
        writer.write_shard(k, [item(i) for i in positions], [])
    writer.finalize(n_planned)
    print("done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
