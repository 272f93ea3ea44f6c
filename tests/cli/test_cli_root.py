"""The command line's surface: help, version, ``python -m hcm`` and the workspace option."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from hcm import __version__
from hcm.cli import app
from hcm.core.workspace import Workspace

runner = CliRunner()


def test_help_lists_every_command_with_a_purpose() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("sample", "extract", "cache", "train", "evaluate"):
        assert command in result.output, f"`hcm --help` does not list {command}"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hcm {__version__}"


def test_python_dash_m_runs_the_same_app() -> None:
    done = subprocess.run([sys.executable, "-m", "hcm", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"hcm {__version__}"


def test_workspace_resolution_order(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HCM_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Workspace.resolve().root == tmp_path / "hcm-work"
    monkeypatch.setenv("HCM_HOME", str(tmp_path / "env-home"))
    assert Workspace.resolve().root == tmp_path / "env-home"
    explicit = Workspace.resolve(tmp_path / "explicit")
    assert explicit.root == tmp_path / "explicit"
    assert explicit.features_dir("mosei", "paper") == tmp_path / "explicit" / "features" / "mosei" / "paper"
