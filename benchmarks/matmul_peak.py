"""The CPU's measured float32 matmul peak: the yardstick for the extraction and training benchmarks.

Times ``a @ b`` of square float32 matrices with a fixed number of torch threads and reports
GFLOP/s (2 n^3 per product). The best of the repeats is the peak estimate; the median shows
how much a shared machine took away during the run.

    python benchmarks/matmul_peak.py --threads 2 --size 2048
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def matmul_peak(threads: int = 2, size: int = 2048, repeats: int = 10) -> dict[str, float]:
    """Best and median float32 GEMM GFLOP/s of ``repeats`` timed products with ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)  # (n, n)
        b = torch.randn(size, size, generator=generator)  # (n, n)
        torch.mm(a, b)  # warm-up: thread pool and packing buffers
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b)
            rates.append(2 * size ** 3 / (time.perf_counter() - started) / 1e9)
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "size": size, "repeats": repeats,
            "best_gflops": round(max(rates), 1), "median_gflops": round(statistics.median(rates), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(matmul_peak(args.threads, args.size, args.repeats)))


if __name__ == "__main__":
    main()
