"""Benchmark of the feature cache on a MOSEI-sized synthetic extraction (run by hand).

Measures: write throughput of ``CacheWriter`` against a plain h5py write of the same arrays,
disk size per item, and random single-item reads (items/s) in one process and through a
DataLoader with worker processes. Feature dims follow the ``paper`` profile, stored as float16.

    python benchmarks/bench_cache.py --items 23000          # the full MOSEI size (~9 GB on disk)
    python benchmarks/bench_cache.py --items 3000 --reads 2000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table
from torch.utils.data import DataLoader, RandomSampler

from hcm.cache import CacheMeta, CacheWriter, FeatureCache, FeatureSpec, Item

# name -> (rows per item, row dim), the paper profile's streams
STREAMS = {"roberta": (50, 1024), "efficientnet": (32, 1280), "clip_image": (32, 1024),
           "esresnext": (20, 1024), "mel": (400, 128)}
POOL = 8  # distinct random arrays per stream, reused so that generation does not dominate


def make_pool(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    return {name: [rng.standard_normal((rows, dim), dtype=np.float32).astype(np.float16) for _ in range(POOL)]
            for name, (rows, dim) in STREAMS.items()}


def make_items(positions: range, pool: dict[str, list[np.ndarray]]) -> list[Item]:
    return [Item(id=f"video{i // 10}$_${i % 10}", split=("train", "valid", "test")[i % 3], label=float(i % 7) - 3,
                 labels={"label_T": 0.0}, text=f"utterance number {i}", group=f"video{i // 10}", position=i % 10,
                 features={name: arrays[i % POOL] for name, arrays in pool.items()},
                 masks={"text": True, "video": True, "audio": True}, notes={}) for i in positions]


def write_raw(path: Path, items: list[Item]) -> None:
    """The baseline: the same arrays concatenated per stream, written contiguously by h5py."""
    with h5py.File(path, "w") as f:
        for name in STREAMS:
            f.create_dataset(name, data=np.concatenate([item.features[name] for item in items]))


def bench_write(root: Path, n_items: int, shard_size: int) -> tuple[float, float, int]:
    """Seconds for CacheWriter and for raw h5py, and feature bytes written."""
    meta = CacheMeta("mosei", "bench", "regression", None, {"bench": True},
                     [FeatureSpec(name, (dim,), "float16", name, "synthetic") for name, (_, dim) in STREAMS.items()],
                     shard_size)
    pool = make_pool(np.random.default_rng(0))
    writer = CacheWriter(root / "cache", meta)
    (root / "raw").mkdir()
    t_cache = t_raw = 0.0
    payload = 0
    for k in track(range(meta.n_shards(n_items)), description="writing shards"):
        items = make_items(range(k * shard_size, min((k + 1) * shard_size, n_items)), pool)
        payload += sum(a.nbytes for item in items for a in item.features.values())
        start = time.perf_counter()
        writer.write_shard(k, items, [])
        t_cache += time.perf_counter() - start
        start = time.perf_counter()
        write_raw(root / "raw" / f"{k}.h5", items)
        t_raw += time.perf_counter() - start
    writer.finalize(n_items)
    return t_cache, t_raw, payload


def _as_list(batch: list[Item]) -> list[Item]:
    return batch


def bench_read(directory: Path, n_reads: int, workers: int, batch_size: int) -> tuple[float, float]:
    """Random single-item reads per second: in this process, and through a DataLoader."""
    cache = FeatureCache(directory)
    order = np.random.default_rng(1).integers(0, len(cache), n_reads)
    start = time.perf_counter()
    for i in order:
        cache[int(i)]
    single = n_reads / (time.perf_counter() - start)
    sampler = RandomSampler(cache, replacement=True, num_samples=n_reads)
    loader = DataLoader(cache, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=_as_list)
    start = time.perf_counter()
    for _ in loader:
        pass
    loaded = n_reads / (time.perf_counter() - start)
    cache.close()
    return single, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=23000, help="items in the synthetic cache (MOSEI: ~23000)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=2000, help="random single-item reads to time")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=8, help="DataLoader batch size (items are lists)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir, removed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hcm-bench-", dir=args.dir))
    try:
        t_cache, t_raw, payload = bench_write(root, args.items, args.shard_size)
        size = sum(p.stat().st_size for p in (root / "cache").iterdir())
        single, loaded = bench_read(root / "cache", args.reads, args.workers, args.batch_size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = Table(title=f"hcm cache, {args.items} synthetic items, {args.shard_size} per shard")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("feature payload per item", f"{payload / args.items / 1024:.1f} KiB")
    table.add_row("disk size per item", f"{size / args.items / 1024:.1f} KiB")
    table.add_row("write, CacheWriter", f"{payload / t_cache / 2**20:.0f} MB/s")
    table.add_row("write, raw h5py", f"{payload / t_raw / 2**20:.0f} MB/s")
    table.add_row("random reads, 1 process", f"{single:.0f} items/s")
    table.add_row(f"random reads, DataLoader {args.workers} workers, batch {args.batch_size}", f"{loaded:.0f} items/s")
    Console().print(table)


if __name__ == "__main__":
    main()
