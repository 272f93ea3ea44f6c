"""``hcm runs``: the workspace's runs in one table, and ``runs/results.csv`` brought up to date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from hcm.core.errors import HcmError, report_errors
from hcm.core.tables import UNITS, metric_cell, print_table
from hcm.core.workspace import Workspace
from hcm.training.results import RESULTS_CSV, collect_rows, seed_groups, update_results
from hcm.training.runs import find_latest_run

#: Test metrics shown in the terminal (all of them are in the CSV), by dataset task.
SHOWN = {"regression": {"mae": "MAE", "corr": "Corr", "acc7": "Acc-7", "acc2_non0": "Acc-2", "f1_non0": "F1"},
         "classification": {"accuracy": "Acc", "weighted_f1": "w-F1"}}


class ResultsWriteError(HcmError):
    """The table was shown but ``results.csv`` could not be written."""


def runs_in_workspace(workspace: Workspace, dataset: str | None = None, as_json: bool = False,
                      console: Console | None = None) -> list[dict[str, Any]]:
    """List the runs (of ``dataset``) and their seed groups, print them, and merge the runs into
    ``<workspace>/runs/results.csv``. Returns the run rows, then the seed-group rows."""
    dataset = dataset.lower() if dataset else None
    find_latest_run(workspace.runs, dataset)  # a clear error when there is no run at all
    rows = collect_rows(workspace.runs, dataset)
    groups = seed_groups(workspace.runs, rows, dataset)
    console = console or Console(stderr=as_json)
    print_table(console, runs_table(rows, groups, workspace.runs))
    waiting = [row["run"] for row in rows if not row["evaluated"]]
    if waiting:
        console.print(f"{len(waiting)} run(s) not evaluated on test yet; e.g. hcm evaluate --run {waiting[-1]}",
                      soft_wrap=True)
    path = workspace.runs / RESULTS_CSV
    try:
        update_results(path, rows)
    except OSError as error:
        raise ResultsWriteError(f"cannot write {path} ({error.strerror or error}); the table above is complete. "
                                f"Make {workspace.runs} writable to keep the results file") from error
    console.print(f"wrote {path} ({len(rows)} run(s) updated)", soft_wrap=True)
    if as_json:
        print(json.dumps([*rows, *groups], indent=1, default=str))
    return [*rows, *groups]


def runs_table(rows: list[dict[str, Any]], groups: Sequence[dict[str, Any]] = (),
               runs_root: Path | None = None) -> Table:
    """Run, (dataset,) modalities, seed, best epoch, valid key metric and test metrics; then one
    mean ± std row per seed group. Runs are named by their folder under ``runs_root/<dataset>``,
    which names the variant too (the ``variant`` column is in results.csv and --json)."""
    datasets = sorted({str(row["dataset"]) for row in [*rows, *groups]})
    keys = sorted({str(row["key_metric"]) for row in [*rows, *groups]})
    table = Table(title=f"runs of {', '.join(datasets)} (oldest first)",
                  caption=f"test split (eval/test/metrics.json; - = not evaluated); Acc-2 and F1: non-0; {UNITS}")
    valid = f"valid {keys[0]}" if len(keys) == 1 else "valid"
    columns = ["run", *(["dataset"] if len(datasets) > 1 else []), "mod.", "seed", "best", valid]
    shown = [name for task in SHOWN.values() for name in task if any(f"test_{name}" in row for row in rows)]
    headers = {name: header for task in SHOWN.values() for name, header in task.items()}
    for header in columns + [headers[name] for name in shown]:
        table.add_column(header, justify="left" if header in columns[:-3] else "right")
    for row in rows:
        table.add_row(*_cells(row, runs_root, len(datasets) > 1, f"{row['best_epoch'] or '-'}/{row['epochs']}",
                              shown, len(keys) > 1))
    if groups:
        table.add_section()
    for group in groups:
        table.add_row(*_cells(group, runs_root, len(datasets) > 1, "mean ± std", shown, len(keys) > 1))
    return table


def _cells(row: dict[str, Any], runs_root: Path | None, with_dataset: bool, best: str, shown: list[str],
           name_key: bool) -> list[str]:
    key = row["key_metric"]
    run = Path(row["run"])
    try:
        name = "/".join(run.relative_to(runs_root).parts[1:]) if runs_root else run.name
    except ValueError:  # a run elsewhere
        name = run.name
    value = metric_cell(key, row.get(f"valid_{key}"))
    return [name, *([str(row["dataset"])] if with_dataset else []), str(row["modalities"]), str(row["seed"]), best,
            f"{key} {value}" if name_key else value, *[metric_cell(name, row.get(f"test_{name}")) for name in shown]]


def runs_command(workspace: Workspace, dataset: str | None = None, as_json: bool = False) -> int:
    """``hcm runs`` with its errors reported as messages; returns the exit status."""
    return report_errors(lambda: runs_in_workspace(workspace, dataset, as_json))
