"""Latency of ``hcm serve`` under a bounded load on the loopback address (run by hand).

Starts the server on a free loopback port over a workspace made by ``hcm quickstart``, then sends
``--pages`` page requests (runs, run pages, explanations, comparison, predict form, studies, a clip
range request, in turn) and ``--predictions`` uploads of a corpus clip to the predict page, all
through ``--concurrency`` client threads at once (httpx). Prints the median and 95th percentile
latency per kind, the status codes and the requests per second, and one JSON line.

    hcm quickstart -w /tmp/bench-ws --quiet
    python benchmarks/bench_serve.py --workdir /tmp/bench-ws --pages 500 --predictions 20 --concurrency 8
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ORIGIN_HEADER = "origin"


def page_paths(workspace: Path, runs: list[str]) -> list[str]:
    """The page mix: every kind of page, each run's page and the first explanations of the last run."""
    predictions = workspace / "runs" / runs[-1] / "eval" / "test" / "predictions.csv"
    with open(predictions, newline="", encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)][:3]
    paths = ["/runs", "/runs?sort=test_mae&desc=true", "/predict", "/studies",
             "/compare?" + urlencode([("run", key) for key in runs[-2:]])]
    paths += [f"/runs/{key}" for key in runs]
    paths += ["/explain?" + urlencode({"run": runs[-1], "split": "test", "id": i}) for i in ids]
    return paths


def run_load(base: str, workspace: Path, runs: list[str], clip: Path, pages: int = 500, predictions: int = 20,
             concurrency: int = 8, explain: bool = False) -> dict[str, Any]:
    """Send the load; returns latencies (s) and status codes per kind, and the wall time."""
    import httpx

    paths = page_paths(workspace, runs)
    clip_bytes = clip.read_bytes()
    page_jobs = [("page", p) for p, _ in zip(itertools.cycle(paths), range(pages))]
    every = max(1, pages // max(1, predictions))  # the predictions spread evenly among the pages
    jobs: list[tuple[str, str]] = []
    for k, job in enumerate(page_jobs):
        if k % every == 0 and len(jobs) - k < predictions:
            jobs.append(("predict", "/predict"))
        jobs.append(job)
    jobs += [("predict", "/predict")] * (pages + predictions - len(jobs))
    latencies: dict[str, list[float]] = {"page": [], "predict": []}
    by_page: dict[str, list[float]] = {}
    statuses: dict[str, Counter] = {"page": Counter(), "predict": Counter()}

    with httpx.Client(base_url=base, timeout=600, headers={ORIGIN_HEADER: base}) as client:
        def one(job: tuple[str, str]) -> None:
            kind, path = job
            started = time.perf_counter()
            if kind == "predict":
                data = {"run": runs[-1], "text": "what a wonderful day", **({"explain": "true"} if explain else {})}
                answer = client.post(path, data=data, files={"clip": (clip.name, clip_bytes, "video/mp4")})
                if answer.status_code == 200 and 'id="score"' not in answer.text and 'id="label"' not in answer.text:
                    statuses[kind]["200 without a prediction"] += 1
            else:
                answer = client.get(path)
            latencies[kind].append(time.perf_counter() - started)
            shown = "/" + path.split("?")[0].split("/")[1] + ("" if kind == "page" else " (upload)")
            by_page.setdefault(shown, []).append(latencies[kind][-1])
            statuses[kind][answer.status_code] += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, jobs))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "by_page": by_page, "statuses": {k: dict(v) for k, v in statuses.items()},
            "wall_s": wall, "pages": pages, "predictions": predictions, "concurrency": concurrency}


def percentiles(values: list[float]) -> dict[str, float]:
    """Median and 95th percentile (nearest rank) in milliseconds."""
    if not values:
        return {"median_ms": float("nan"), "p95_ms": float("nan")}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"median_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * p95}


def workspace_runs(workspace: Path) -> tuple[list[str], Path]:
    """The workspace's runs (oldest first) and one clip of its quickstart corpus."""
    from hcm.training.runs import list_runs

    runs = [p.relative_to(workspace / "runs").as_posix() for p in list_runs(workspace / "runs")]
    clips = sorted((workspace / "data").rglob("*.mp4"))
    if not runs or not clips:
        raise SystemExit(f"{workspace} holds no run or no clip; make it with: hcm quickstart -w {workspace}")
    return runs, clips[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a workspace made by hcm quickstart")
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--predictions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--explain", action="store_true", help="explain each uploaded clip too")
    args = parser.parse_args()

    from hcm.apps.serve.command import background_server
    from hcm.apps.serve.settings import ServeSettings
    from hcm.core.workspace import Workspace

    workspace = Workspace.resolve(args.workdir)
    runs, clip = workspace_runs(workspace.root)
    with background_server(ServeSettings(workspace, port=0, device="cpu")) as base:
        result = run_load(base, workspace.root, runs, clip, args.pages, args.predictions, args.concurrency,
                          args.explain)
    report = {kind: {"requests": len(values), **percentiles(values)} for kind, values in result["latencies"].items()}
    for kind, numbers in report.items():
        print(f"{kind:8s} {numbers['requests']:4d} requests  median {numbers['median_ms']:8.1f} ms  "
              f"p95 {numbers['p95_ms']:8.1f} ms  status {result['statuses'][kind]}")
    for page, values in sorted(result["by_page"].items()):
        numbers = percentiles(values)
        print(f"  {page:18s} {len(values):4d} requests  median {numbers['median_ms']:8.1f} ms  "
              f"p95 {numbers['p95_ms']:8.1f} ms")
    total = args.pages + args.predictions
    print(f"{total} requests, {args.concurrency} at a time, in {result['wall_s']:.1f} s "
          f"({total / result['wall_s']:.1f} requests/s)")
    print(json.dumps({"latency": report, "statuses": result["statuses"], "wall_s": result["wall_s"],
                      "concurrency": args.concurrency}))


if __name__ == "__main__":
    main()
