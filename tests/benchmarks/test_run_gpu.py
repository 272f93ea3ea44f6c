"""benchmarks/run_gpu.py in its CPU dry mode, so the GPU benchmark cannot rot between GPU loans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "run_gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_dry_run_on_cpu_reports_every_section() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--dry", "--keops", "no"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["dry"] is True
    for section in ("peak", "encoders", "train_step", "ot"):
        assert "error" not in report[section], report[section]
    assert set(report["encoders"]["clips_per_s"]) == {"fp32", "bf16"}
    assert {"roberta", "efficientnet", "clip_image", "clip_text", "esresnext"} <= set(report["encoders"])
    for precision in ("fp32", "bf16"):
        assert report["train_step"][precision]["ms_per_step"] > 0
        graphed = report["train_step"][f"{precision}_step_graph"]
        assert graphed["ms_per_step"] > 0 and graphed["captured"] and graphed["dry"]
    assert report["peak"]["fp32"] > 0
    assert report["encoders"]["share_of_matmul_peak"]["fp32"] > 0
    assert [(row["batch"], row["nodes"]) for row in report["ot"]["rows"]] == [(1, 8), (1, 16), (2, 8)]
    assert all(row["torch_ms"] > 0 for row in report["ot"]["rows"])
    assert report["ot"]["training_size"]["torch_ms"] > 0
