"""Closing words: `hcm train` names the run, best epoch and score, wall time and the next command and
writes train.log; `hcm evaluate` lists what it wrote and prints the report with --json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hcm_tiny_cache import build_cache
from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()
TINY = ["--epochs", "2", "--batch-size", "16", "--quiet", "--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1"]


def test_train_summary_log_and_evaluate_json(workdir: Path) -> None:
    build_cache(workdir / "features" / "sample" / "tiny", n=24)
    result = runner.invoke(app, ["train", *TINY])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "sample").iterdir()
    assert f"run {run}" in result.stdout and f"next: hcm evaluate --run {run}" in result.stdout
    assert "best epoch " in result.stdout and "valid mae " in result.stdout and "wall time " in result.stdout
    lines = (run / "train.log").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["epoch 1", "epoch 2"] and "valid_mae" in lines[0]

    result = runner.invoke(app, ["evaluate", "--run", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "test" and "mae" in report["metrics"]
    assert str(run / "eval" / "test" / "metrics.json") in report["files"]
    assert "wrote:\n  " in result.stderr and "predictions.csv" in result.stderr
    assert "scatter.png" in result.stderr and "confusion_acc7.png" in result.stderr
    assert report["Non0_F1_score"] == report["mmsa"]["Non0_F1_score"]  # MMSA's names at the top level

    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["run"] == str(run) and row["variant"] == "full" and row["evaluated"] == "test"
    assert row["test_mae"] == report["metrics"]["mae"] and row["Mult_acc_7"] == report["mmsa"]["Mult_acc_7"]
    assert f"wrote {workdir / 'runs' / 'results.csv'}" in result.stderr
    with open(workdir / "runs" / "results.csv", newline="") as table:
        (saved,) = list(csv.DictReader(table))
    assert saved["best_epoch"] == str(row["best_epoch"]) and "Has0_acc_2" in saved
