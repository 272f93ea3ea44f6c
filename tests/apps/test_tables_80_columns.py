"""Every table hcm prints, and every command's --help, rendered at COLUMNS=80: no line is wider,
no cell is cut with "…", and every number of the table appears whole."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import typer
from cli_probe import command_paths
from rich.console import Console
from typer.testing import CliRunner

from hcm.apps.ablate import rich_table
from hcm.apps.predict import predictions_table
from hcm.apps.quickstart import summary_table
from hcm.apps.results import runs_table
from hcm.cli import app
from hcm.core.tables import CONTINUED, fit_table, metric_cell, print_table
from hcm.training.evaluate import metrics_table
from hcm.training.settings import load_dataset_facts

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?: ± \d+\.\d+)?")
REGRESSION = {"mae": 0.71234, "corr": 0.61234, "acc7": 0.45678, "acc5": 0.47891, "acc2_has0": 0.80123,
              "f1_has0": 0.80456, "acc2_non0": 0.81789, "f1_non0": 0.81999, "mult_acc_2": 0.77, "mult_acc_3": 0.61,
              "mult_acc_5": 0.40, "f1_score": 0.771}
SEEDS = {name: {"mean": value, "std": 0.01234, "n": 3} for name, value in REGRESSION.items()}


def meld_metrics(offset: float) -> dict[str, float]:
    names = load_dataset_facts("meld").class_names
    metrics = {f"f1_{name}": 0.2045 + offset + k / 100 for k, name in enumerate(names)}
    return {**metrics, "accuracy": 0.5195 + offset, "weighted_f1": 0.4912 + offset}


def run_row(name: str, seed: int, metrics: dict | None, root: Path = Path("/w/runs")) -> dict:
    row = {"run": str(root / "mosei" / name), "dataset": "mosei", "variant": "full", "modalities": "tva",
           "seed": seed, "best_epoch": 13, "epochs": 15, "key_metric": "mae", "valid_mae": 0.70123,
           "evaluated": "test" if metrics else ""}
    row.update({f"test_{k}": v for k, v in (metrics or {}).items()})
    return row


def tables() -> dict[str, object]:
    mosei, meld, sims = (load_dataset_facts(name) for name in ("mosei", "meld", "sims"))
    runs = [run_row("20261206-121500-full", 0, REGRESSION), run_row("20261206-121501-full-s1", 1, REGRESSION),
            run_row("20261206-121502-ablation/no-acl-s0", 0, None)]
    group = {**run_row("20261206-121503-full-seeds", 0, None), "group": "seeds", "seed": "0,1,2",
             "valid_mae": SEEDS["mae"], **{f"test_{k}": v for k, v in SEEDS.items()}}
    ablation = {"dataset": "mosei", "split": "test", "seeds": [0, 1, 2], "epochs": 100, "task": "regression",
                "settings": [{"family": "variant", "title": "HCMNet (full)", "metrics": SEEDS},
                             {"family": "modalities", "title": "T+V", "metrics": SEEDS}],
                "baseline": REGRESSION}
    predictions = [{"clip": "/data/clips/a-rather-long-clip-name-0001.mp4", "label": "positive", "score": 1.23456,
                    "masked": "text", "error": ""},
                   {"clip": "/data/clips/b.mp4", "label": "joy", "score": None, "p_joy": 0.457, "p_anger": 0.2,
                    "masked": "", "error": ""}]
    return {
        "evaluate mosei": metrics_table(mosei, [("HCMNet", REGRESSION), ("baseline", REGRESSION)], "mosei test"),
        "evaluate meld": metrics_table(meld, [("HCMNet", meld_metrics(0)), ("baseline", meld_metrics(0.1))], "meld"),
        "evaluate sims": metrics_table(sims, [("HCMNet", REGRESSION)], "sims test"),
        "evaluate seeds": metrics_table(mosei, [("HCMNet (3 seeds)", SEEDS), ("baseline", REGRESSION)], "seeds"),
        "evaluate meld seeds": metrics_table(meld, [("HCMNet (3 seeds)", {k: {"mean": v, "std": 0.0123, "n": 3}
                                                                         for k, v in meld_metrics(0).items()})]),
        "runs": runs_table(runs, [group], Path("/w/runs")),
        "ablate": rich_table(ablation),
        "quickstart": summary_table({"tva": {"items": 45, "metrics": REGRESSION, "baseline": REGRESSION},
                                     "va": {"items": 45, "metrics": REGRESSION}}, 113.4),
        "predict": predictions_table(predictions),
    }


def cells(table, numbers_only: bool = False) -> list[str]:
    """The table's cells (``numbers_only``: those of its right-justified, number columns)."""
    return [str(cell) for column in table.columns if column.justify == "right" or not numbers_only
            for cell in column._cells]


@pytest.mark.parametrize("name", list(tables()))
def test_every_table_fits_80_columns_without_cutting_a_number(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    table = tables()[name]
    numbers = [number for cell in cells(table, numbers_only=True) for number in NUMBER.findall(cell)]
    assert numbers
    out = io.StringIO()
    console = Console(file=out, color_system=None)
    assert console.width == 80
    print_table(console, table)
    text = out.getvalue()
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    joined = "\n".join(text.splitlines())
    for number in numbers:
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", joined), f"{number} is not whole in\n{text}"


def test_a_table_wider_than_the_terminal_is_stacked_with_a_note() -> None:
    meld = load_dataset_facts("meld")
    table = metrics_table(meld, [("HCMNet", meld_metrics(0))], "meld test")
    parts = fit_table(table, 80)
    assert len(parts) == 2 and parts[0].caption == CONTINUED and parts[0].title == "meld test"
    assert [part.columns[0].header for part in parts] == ["Method", "Method"]  # the label column repeats
    headers = [column.header for part in parts for column in part.columns[1:]]
    assert headers == [column.header for column in table.columns[1:]]  # every column, once
    assert len(fit_table(table, 200)) == 1


def test_one_unit_convention() -> None:
    assert metric_cell("mae", 0.71234) == "0.712" and metric_cell("acc2_non0", 0.5195) == "51.95"
    assert metric_cell("test_corr", {"mean": 0.6, "std": 0.01, "n": 3}) == "0.600 ± 0.010"
    assert metric_cell("accuracy", None) == "-" and metric_cell("accuracy", float("nan")) == "-"
    runs = runs_table([run_row("a-full", 0, {"acc2_non0": 0.5195})], (), Path("/w/runs"))
    assert "51.95" in cells(runs) and "accuracies and F1 in %" in runs.caption


COMMANDS = command_paths(groups=True)  # hcm itself, every group and command, read from the command tree


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hcm")
def test_help_fits_80_columns_and_names_every_option_whole(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.output, result.output
    listed = lines[lines.index("Commands:") + 1:] if "Commands:" in lines else []
    assert not any(line.rstrip().endswith("...") for line in listed), result.output  # click cuts a command's help
    shown = typer.main.get_command(app)
    for part in command:
        shown = shown.commands[part]
    for param in shown.params:
        for option in param.opts:
            if option.startswith("--") and not getattr(param, "hidden", False):
                assert re.search(rf"(^|[\s,]){re.escape(option)}([\s,=]|$)", result.output, re.M), option
