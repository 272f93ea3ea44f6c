"""Help that teaches and answers at once: no torch/transformers import for help or a usage error,
an example and defaults in every command's help, flags without a type, ``-w`` after the command."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_probe import command_paths, probe_commands
from typer.testing import CliRunner

from hcm.apps.options import workdir_first
from hcm.cli import app

runner = CliRunner()
COMMANDS = command_paths()  # every command, read from the command tree
USAGE_ERRORS = [["train", "--epochs", "0"], ["train", "--lr", "0"], ["train", "--seeds", "a,b"],
                ["train", "--set", "dropout"], ["evaluate", "--split", "train"], ["ablate", "--seeds", "x"],
                ["reproduce", "--seeds", "1,x"], ["tune", "--trials", "0"], ["tune", "--pruner", "asha"],
                ["extract", "--dataset", "mosei", "--frames", "0"], ["import", "mmsa", "f.pkl", "-d", "mosi",
                                                                     "--aligned-rows", "some"]]



def test_help_and_usage_errors_import_no_heavy_library(tmp_path: Path) -> None:
    calls = [["--help"], *[[*c, "--help"] for c in COMMANDS], *USAGE_ERRORS]
    report, _ = probe_commands(calls, tmp_path, timeout=120)
    assert report["heavy"] == [], f"imported {report['heavy']} before the arguments were checked"
    assert report["codes"] == [0] * (len(COMMANDS) + 1) + [2] * len(USAGE_ERRORS), report


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_shows_an_example_and_no_bool_metavar(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Example:  hcm {' '.join(command)}" in result.output
    assert "<bool>" not in result.output


def test_train_help_shows_where_each_default_comes_from() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    entries = " ".join(result.output.split()).split(" --")  # one entry per option, its help unwrapped
    for option in ("epochs", "batch-size", "lr", "seed", "workers"):
        entry = next(text for text in entries if text.startswith(f"{option} "))
        assert "[default: (dataset config)" in entry, entry


def test_workdir_after_the_command(tmp_path: Path) -> None:
    assert workdir_first(["train", "-w", "W", "--epochs", "2"]) == ["-w", "W", "train", "--epochs", "2"]
    assert workdir_first(["cache", "info", "X", "--workdir=W"]) == ["--workdir=W", "cache", "info", "X"]
    assert workdir_first(["-w", "W", "train"]) == ["-w", "W", "train"]
    result = runner.invoke(app, ["sample", "--dataset", "mosei", "--n", "6", "--quiet", "-w", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w" / "data" / "sample-mosei").is_dir()


def test_split_choices_are_enforced() -> None:
    result = runner.invoke(app, ["evaluate", "--split", "train"])
    assert result.exit_code == 2 and "'train' is not one of" in result.output
