"""Subprocess for the kill test: writes a synthetic cache shard by shard, resuming what exists.

Usage: python cache_kill_child.py DIRECTORY N_PLANNED SHARD_SIZE [PAUSE_AT]
Prints ``writing K`` before each shard. With PAUSE_AT, the writer stops inside the atomic write
of shard PAUSE_AT (its temp file written, not yet renamed), prints ``paused K`` and waits there
for the parent's SIGKILL: the kill lands mid-write every time, with no polling.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from hcm.cache import CacheMeta, CacheWriter, FeatureSpec, Item
from hcm.cache import writer as writer_module

SPECS = [FeatureSpec("roberta", (512,), "float16", "roberta", "roberta-large", {}),
         FeatureSpec("token_word", (), "int32", "spacy", "en_core_web_sm", {})]


def item(i: int) -> Item:
    rng = np.random.default_rng(i)
    n = int(rng.integers(0, 80))
    return Item(f"clip{i}", ("train", "valid", "test")[i % 3], float(i) / 7, {"i": i}, f"text {i}", f"g{i // 4}",
                i % 4, {"roberta": rng.standard_normal((n, 512)), "token_word": np.arange(n)}, {"text": n > 0}, {})


def pause_inside_shard(pause_at: int) -> None:
    """Make the writer stop after writing shard ``pause_at``'s temp file, before its rename."""
    write = writer_module.write_shard_file

    def write_then_wait(path: Path, meta: CacheMeta, k: int, *args) -> None:
        write(path, meta, k, *args)
        if k == pause_at:
            print(f"paused {k}", flush=True)
            time.sleep(600)  # the parent kills the process here

    writer_module.write_shard_file = write_then_wait


def main(directory: Path, n_planned: int, shard_size: int, pause_at: int | None = None) -> None:
    if pause_at is not None:
        pause_inside_shard(pause_at)
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
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
