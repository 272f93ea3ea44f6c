"""The CPU benchmarks' building blocks run and report what RESULTS.md quotes (tiny sizes)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hcm_tiny_cache import build_cache

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hcm_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matmul_peak_reports_best_and_median_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    report = _load("matmul_peak").matmul_peak(threads=1, size=64, repeats=3)
    assert report["best_gflops"] >= report["median_gflops"] > 0
    assert torch.get_num_threads() == threads


@pytest.mark.slow  # a subprocess that imports torch, builds a model and counts FLOPs: about a minute when shared
def test_step_benchmark_on_a_cache_reports_the_loader_share(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "cache", n=24, dataset="mosei", profile="paper")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_step.py"), "--dataset", "mosei", "--cache", str(cache),
         "--batch", "4", "--repeats", "1", "--threads", "1", "--no-blocks",
         "--set-model", "d_model=16", "--set-model", "m_c=1", "--set-model", "m_gcn=1", "--peak-size", "64"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["source"].startswith("cache") and report["batch"] == 4
    assert report["ms_per_step"] > 0 and report["gflop_per_step"] > 0 and 0 < report["loader_share"] < 1
    assert report["nodes"]["video"] >= 1 and report["share_of_peak"] > 0


def test_the_graphed_step_timing_runs_through_the_dry_graphs() -> None:
    """bench_step's --step-graph timing on the CPU stand-in graphs: captured, timed, the weights moved."""
    from hcm.model.config import ModelConfig
    from hcm.model.hcmnet import build_model

    bench = _load("bench_step")
    torch.manual_seed(0)
    dims = {"text": 12, "video": 10, "audio": 8}
    model = build_model(ModelConfig(d_text=12, d_video=10, d_audio=8, d_model=16, num_heads=2, m_ctn=2, m_gcn=1,
                                    m_c=1, ot_iters=5, num_classes=3)).train()
    before = [p.detach().clone() for p in model.parameters()]
    batch = bench.synthetic_batch(4, {"text": 6, "video": 3, "audio": 3}, dims, 3)
    seconds, cpu, captured = bench.graphed_step_time(model, batch, repeats=1, dry=True)
    assert captured and seconds > 0 and cpu > 0
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_ot_peers_and_serial_run_at_tiny_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    """bench_ot's peer table (POT's batched scaling solver included) and its one-sample crossover."""
    bench = _load("bench_ot")
    args = argparse.Namespace(batch=2, nodes=4, dim=3, iters=5, eps=0.5, p=2, repeats=1,
                              skip=["keops", "per sample", "geomloss", "loop"], sizes=[6])
    bench.peers(args)
    bench.serial(args)
    out = capsys.readouterr().out
    for row in (bench.BASELINE, "POT ot.batch.solve_batch sinkhorn autodiff", "hcm torch, unfused scaling path forced"):
        assert f"speed-up of hcm auto over {row}" in out
    assert "M=N=     6 fused" in out and "fused is faster by" in out
