"""Training on a shared machine: 3 epochs on the quickstart cache, idle and beside CPU-bound jobs.

Run by hand (numbers go to benchmarks/RESULTS.md with the machine, date and load they ran under):

    .venv/bin/python benchmarks/bench_shared.py --workdir /tmp/bench-shared [--before /tmp/hcm-before]

Each measurement is one ``python -m hcm train`` process (3 epochs, the quickstart's train
settings) timed from start to exit, with the CPU time it used. "loaded" starts ``--hogs``
busy-looping Python processes first (each wants one whole CPU) and stops them afterwards.
Settings compared:

- ``default``: hcm as shipped (``OMP_WAIT_POLICY=PASSIVE``, threads = CPUs this process may use);
- ``threads=1``: ``hcm train --threads 1``;
- ``before``: with ``--before DIR``, an older hcm (``DIR/hcm`` importable, e.g. from ``git archive``)
  that left OpenMP waits and the thread count at torch's defaults.

The corpus (300 clips) and its tiny-profile cache are made once under ``--workdir`` and reused.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

TRAIN = ["--epochs", "3", "--batch-size", "16", "--lr", "0.001", "--set", "in_memory=true", "--set",
         "patience=0", "--quiet"]


def ensure_cache(workdir: Path) -> Path:
    """The quickstart corpus and its tiny cache (made once)."""
    from hcm.core.workspace import Workspace
    from hcm.pipeline.extract import extract
    from hcm.pipeline.sample import make_sample

    workspace = Workspace(workdir)
    corpus, cache = workspace.data / "quickstart-mosei", workspace.features / "sample" / "quickstart"
    if not (cache / "manifest.json").is_file():
        make_sample("mosei", corpus, 300, 0, progress=False)
        extract("sample", data_root=corpus, out=cache, profile="tiny", workspace=workspace, batch_size=16,
                shard_size=50, progress=False)
    return cache


def timed_train(workdir: Path, cache: Path, pythonpath: str, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``hcm train`` process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hcm", "--workdir", str(workdir), "train", "--features", str(cache),
                    *TRAIN, *extra], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def start_hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.terminate()
    for hog in hogs:
        hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="workspace for the corpus, cache and runs")
    parser.add_argument("--before", type=Path, help="folder holding an older hcm package to compare with")
    parser.add_argument("--hogs", type=int, default=3, help="competing CPU-bound processes")
    args = parser.parse_args()
    cache = ensure_cache(args.workdir)
    here = str(Path(__import__("hcm").__file__).parent.parent)
    settings = [("default", here, []), ("threads=1", here, ["--threads", "1"])]
    if args.before:
        settings.insert(0, ("before", str(args.before), []))
    print(f"{date.today()}  {os.cpu_count()} CPUs (affinity {len(os.sched_getaffinity(0))}), "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print("| setting | idle wall s | idle CPU s | loaded wall s | loaded CPU s | loaded / idle |")
    print("|---|---|---|---|---|---|")
    for name, path, extra in settings:
        idle = timed_train(args.workdir, cache, path, extra)
        hogs = start_hogs(args.hogs)
        try:
            time.sleep(1.0)
            loaded = timed_train(args.workdir, cache, path, extra)
        finally:
            stop_hogs(hogs)
        print(f"| {name} | {idle[0]:.1f} | {idle[1]:.1f} | {loaded[0]:.1f} | {loaded[1]:.1f} | "
              f"{loaded[0] / idle[0]:.2f}x |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
