"""``hcm serve`` under a bounded load on the loopback address: 500 page requests and 20 predictions,
8 at a time (benchmarks/bench_serve.py's load on the test's quickstart workspace), answer without
a server error, every prediction with its result, and the predictor is loaded once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="hcm serve's web packages: pip install -e '.[serve]'")

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_serve.py"


@pytest.mark.slow
def test_pages_and_predictions_under_load_answer_without_a_server_error(live_server, served) -> None:
    spec = importlib.util.spec_from_file_location("hcm_bench_serve", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run_load(live_server, served.workspace.root, served.runs, served.clip, pages=500, predictions=20,
                            concurrency=8)
    assert result["statuses"]["page"] == {200: 500}, result["statuses"]
    assert result["statuses"]["predict"] == {200: 20}, result["statuses"]
    assert len(result["latencies"]["page"]) == 500 and len(result["latencies"]["predict"]) == 20
    numbers = bench.percentiles(result["latencies"]["page"])
    assert 0 < numbers["median_ms"] <= numbers["p95_ms"]
