"""Provenance in config.json and manifest.json (hcm version, git commit of a checkout, command line,
torch, device), and extending a finished run explicitly with `hcm train --resume --epochs N`."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from hcm_tiny_cache import build_cache
from typer.testing import CliRunner

import hcm
from hcm.cli import app
from hcm.core.provenance import command_line, git_commit

runner = CliRunner()
TINY = ["--batch-size", "16", "--quiet", "--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1"]
SOURCE = Path(hcm.__file__).resolve().parent


def expected_commit() -> str | None:
    if not (SOURCE / ".git").exists():
        return None
    head = subprocess.run(["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    return head.strip()


def check_provenance(record: dict, device: str | None) -> None:
    assert record["hcm_version"] == hcm.__version__ and record["torch"] and record["python"]
    assert isinstance(record["command"], str) and record["command"]
    commit = expected_commit()
    assert (record["git_commit"] is None) if commit is None else record["git_commit"].startswith(commit)
    assert record.get("device") == device


def test_command_line_and_commit_outside_a_checkout(tmp_path: Path) -> None:
    assert command_line(["/usr/bin/hcm", "train", "--set", "note=a b"]) == "hcm train --set 'note=a b'"
    assert git_commit(tmp_path) is None


@pytest.mark.slow
def test_provenance_recorded_and_a_finished_run_extended(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = build_cache(workdir / "features" / "sample" / "tiny", n=24)
    check_provenance(json.loads((cache / "manifest.json").read_text())["provenance"], None)

    result = runner.invoke(app, ["train", "--epochs", "2", *TINY])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "sample").iterdir()
    check_provenance(json.loads((run / "config.json").read_text())["provenance"], "cpu")

    shorter = runner.invoke(app, ["train", "--resume", "--run", str(run), "--epochs", "1"])
    assert shorter.exit_code == 2 and "can only be extended" in shorter.stderr, shorter.output

    longer = runner.invoke(app, ["train", "--resume", "--run", str(run), "--epochs", "3", "--quiet"])
    assert longer.exit_code == 0, longer.output
    assert "extending run" in caplog.text and "from 2 to 3 epochs (2 done)" in caplog.text
    assert "ignoring" not in caplog.text
    with open(run / "metrics.csv", newline="") as table:
        assert [row["epoch"] for row in csv.DictReader(table)] == ["1", "2", "3"]
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 3
    (extension,) = config["extended"]
    assert (extension["from_epochs"], extension["to_epochs"], extension["at_epoch"]) == (2, 3, 2)

    again = runner.invoke(app, ["train", "--resume", "--run", str(run), "--quiet"])  # nothing left: no error
    assert again.exit_code == 0, again.output
