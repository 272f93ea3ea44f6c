"""The command line's surface: help, version, ``python -m hcm`` and the workspace option."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from hcm import __version__
from hcm.cli import app
from hcm.core.workspace import Workspace

runner = CliRunner()


#: The commands a user of hcm relies on; removing one must fail this module.
COMMANDS = {"quickstart", "sample", "extract", "train", "evaluate", "runs", "predict", "ablate", "reproduce",
            "tune", "explain", "report", "serve", "import", "cache"}
SUBCOMMANDS = {"import": {"mmsa", "csd"}, "cache": {"info", "verify"}}


def _listed_commands(output: str) -> dict[str, str]:
    """The rows of the help's Commands section: name -> the first line of its purpose (plain
    help: ``  name  purpose``; a rich panel: ``| name  purpose |``)."""
    section = output[output.index("Commands"):]
    rows = re.findall(r"^(?:\W )? {0,2}([a-z][\w-]*) {2,}(\S.*?)[\s\W]*$", section.split("\n", 1)[1],
                      flags=re.MULTILINE)
    return dict(rows)


def test_help_lists_every_command_with_a_purpose() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    listed = _listed_commands(result.output)
    registered = set(typer.main.get_command(app).commands)
    assert COMMANDS <= registered, f"commands gone from hcm: {sorted(COMMANDS - registered)}"
    assert set(listed) == registered, "`hcm --help` must list exactly the registered commands"
    for command, purpose in listed.items():
        assert len(purpose.split()) >= 3, f"`hcm --help` gives {command} no purpose"


@pytest.mark.parametrize("group", sorted(SUBCOMMANDS))
def test_group_help_lists_its_subcommands(group: str) -> None:
    result = runner.invoke(app, [group, "--help"])
    assert result.exit_code == 0, result.output
    listed = _listed_commands(result.output)
    assert SUBCOMMANDS[group] <= set(listed), f"`hcm {group} --help` lacks {sorted(SUBCOMMANDS[group] - set(listed))}"
    assert all(len(purpose.split()) >= 3 for purpose in listed.values())


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
