"""`hcm train` / `hcm evaluate` under faults, end to end: Ctrl-C in a real process, a failed run,
a folder that cannot be written, masked test items, OpenMP waits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hcm_tiny_cache import build_cache, plant_nan
from typer.testing import CliRunner

import hcm
from hcm.cli import app
from hcm.training import evaluate as E

runner = CliRunner()
HELPERS = Path(__file__).resolve().parents[1] / "helpers"
SMALL = ["--epochs", "2", "--batch-size", "8", "--quiet"]


def _hcm(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m hcm`` in a fresh process (real signal delivery), with the test helpers importable."""
    path = os.pathsep.join([str(Path(hcm.__file__).parent.parent), str(HELPERS)])
    full_env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "hcm", "--workdir", str(workdir), *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_ctrl_c_mid_epoch_exits_130_and_prints_the_resume_command(workdir: Path) -> None:
    build_cache(workdir / "features" / "sample" / "tiny")
    done = _hcm(workdir, "train", *SMALL, "--model-factory", "hcm_signal_model:SignalNet",
                env={"HCM_TEST_SIGNAL": "SIGINT:6"})  # epoch 2, step 2
    assert done.returncode == 130, done.stderr
    command = re.search(r"hcm train --resume --run (\S+)", done.stderr)
    assert command and "SIGINT at epoch 2, step 2" in done.stderr, done.stderr
    run = Path(command.group(1))
    assert run.parent == workdir / "runs" / "sample"
    resumed = runner.invoke(app, ["train", "--resume", "--run", str(run), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert len((run / "metrics.csv").read_text().splitlines()) == 3


def test_a_failed_train_leaves_no_empty_run_folder(workdir: Path) -> None:
    cache = build_cache(workdir / "features" / "sample" / "tiny")
    plant_nan(cache, "clip005")
    result = runner.invoke(app, ["train", *SMALL])
    assert result.exit_code == 1 and "NaN or infinite values" in result.output
    assert list((workdir / "runs" / "sample").iterdir()) == []


def test_a_runs_folder_that_cannot_be_written_is_named_before_any_work(workdir: Path) -> None:
    build_cache(workdir / "features" / "sample" / "tiny")
    (workdir / "runs").write_text("a file where the runs folder should be")
    result = runner.invoke(app, ["train", *SMALL])
    assert result.exit_code == 2, result.output
    assert f"the runs folder {workdir / 'runs'} is not writable" in " ".join(result.output.split())


@pytest.fixture
def evaluated_run(workdir: Path) -> Path:
    """A 2-epoch run on a cache whose test split has two items with masked media."""
    build_cache(workdir / "features" / "sample" / "tiny", masked={"clip041": ["video"], "clip044": ["video", "audio"]})
    result = runner.invoke(app, ["train", *SMALL, "--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1"])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "sample").iterdir()
    return run


def test_evaluate_counts_masked_items_and_scores_every_one(evaluated_run: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--threads", "1"])
    torch.set_num_threads(2)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 of 8 test items had a masked modality (video 2, audio 1)" in text
    report = json.loads((evaluated_run / "eval" / "test" / "metrics.json").read_text())
    assert report["items"] == 8
    assert report["masked"] == {"items": 2, "per_modality": {"text": 0, "video": 2, "audio": 1}}
    predicted = (evaluated_run / "eval" / "test" / "predictions.csv").read_text()
    assert "clip041" in predicted and "clip044" in predicted


def test_evaluate_prints_its_table_when_it_cannot_write(evaluated_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(path, *args) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(E, "write_json", read_only)
    monkeypatch.setattr(E, "atomic_write", read_only)
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "MAE" in text and "baseline" in text
    assert text.index("MAE") < text.index("could not be written")
    assert "metrics.json (Permission denied)" in text and "predictions.csv (Permission denied)" in text
    assert "wrote" not in text  # nothing was written: no empty "wrote" line


def test_the_command_line_makes_openmp_waits_passive_before_torch_loads() -> None:
    probe = "import os, sys, hcm.cli; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    path = str(Path(hcm.__file__).parent.parent)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "PYTHONPATH": path}, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["PASSIVE", "False"]
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "PYTHONPATH": path, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["ACTIVE", "False"]  # the user's choice stands


def test_skip_nonfinite_reaches_the_run_settings(workdir: Path) -> None:
    cache = build_cache(workdir / "features" / "sample" / "tiny")
    plant_nan(cache, "clip005")
    result = runner.invoke(app, ["train", *SMALL, "--skip-nonfinite", "3", "--set", "standardise_streams=false",
                                 "--model-factory", "hcm_tiny_model:TinyNet"])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "sample").iterdir()
    assert json.loads((run / "config.json").read_text())["train"]["skip_nonfinite"] == 3
    rows = (run / "metrics.csv").read_text().splitlines()
    skipped = rows[0].split(",").index("train_skipped")
    assert [row.split(",")[skipped] for row in rows[1:]] == ["1", "1"]
