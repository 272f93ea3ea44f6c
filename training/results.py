"""The results table across runs: one row per run folder, gathered into ``runs/results.csv``.

A row holds what tells runs apart (dataset, variant, modalities, profile, seed), how training went
(epochs, best epoch, best validation key metric, read from ``metrics.csv``) and the test metrics of
``eval/test/metrics.json`` when the run has been evaluated; a run of ``hcm tune`` also carries its
``study``, ``trial`` number and ``tune_role`` (search, grid or confirm) from its ``tune.json``.
The test columns:

- ``test_<name>`` for every metric hcm computes (``test_mae``, ``test_acc2_non0``, ``test_f1_angry``);
- for the regression datasets also MMSA's key names (``Has0_acc_2``, ``Non0_F1_score``,
  ``Mult_acc_7``, ``MAE``, ``Corr``, ...), rounded to 4 decimals as MMSA reports them, so scripts
  written for MMSA's ``results/<dataset>.csv`` find their columns.

The CSV accumulates like MMSA's: a run listed again replaces its own row (matched by its folder),
rows of runs listed earlier stay, and new runs are appended. Reading it needs no torch.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from hcm.core.files import read_json, write_csv
from hcm.training.runs import RunPaths, list_runs

RESULTS_CSV = "results.csv"
TUNING_RECORD = "tune.json"  # written into its runs by ``hcm tune``
log = logging.getLogger(__name__)


def best_epoch(metrics_csv: Path) -> tuple[int | None, int]:
    """The last epoch marked ``best`` in a run's ``metrics.csv``, and how many epochs it records."""
    if not metrics_csv.is_file():
        return None, 0
    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    best = [int(row["epoch"]) for row in rows if row.get("best") == "True"]
    return (best[-1] if best else None), len(rows)


def _valid_value(metrics_csv: Path, epoch: int | None, key: str) -> float | None:
    """The validation key metric of ``epoch`` in ``metrics.csv``."""
    if epoch is None:
        return None
    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if int(row["epoch"]) == epoch and row.get(f"valid_{key}") not in (None, ""):
                return float(row[f"valid_{key}"])
    return None


def run_row(run_dir: Path, split: str = "test") -> dict[str, Any]:
    """One row of the results table for ``run_dir`` (see the module docstring for its columns)."""
    paths = RunPaths(Path(run_dir))
    config = read_json(paths.config, "run config")
    model, train = config.get("model", {}), config.get("train", {})
    epoch, epochs = best_epoch(paths.metrics_csv)
    key = config.get("key_metric", "")
    row: dict[str, Any] = {
        "run": str(paths.root), "dataset": config.get("dataset"), "variant": model.get("variant"),
        "modalities": model.get("modalities"), "reading": model.get("reading", ""),
        "profile": config.get("profile"), "seed": train.get("seed"), "created": config.get("created", ""),
        "epochs": epochs, "best_epoch": epoch, "key_metric": key,
        f"valid_{key}": _valid_value(paths.metrics_csv, epoch, key), "evaluated": "",
    }
    tuning = paths.root / TUNING_RECORD
    if tuning.is_file():  # a run of ``hcm tune``: its study and trial number
        record = read_json(tuning, "tuning record")
        row.update(study=record.get("study"), trial=record.get("trial"), tune_role=record.get("role"))
    report_path = paths.eval_dir(split) / "metrics.json"
    if report_path.is_file():
        report = read_json(report_path, f"{split} metrics")
        row["evaluated"] = split
        row.update({f"{split}_{name}": value for name, value in report.get("metrics", {}).items()})
        row.update(report.get("mmsa", {}))
    return row


def collect_rows(runs_root: Path, dataset: str | None = None, split: str = "test") -> list[dict[str, Any]]:
    """Rows for every run under ``runs_root`` (oldest first); a run whose files cannot be read is
    skipped with a warning that names the file."""
    rows = []
    for run in list_runs(runs_root, dataset):
        try:
            rows.append(run_row(run, split))
        except (ValueError, OSError, KeyError) as error:
            log.warning("skipped run %s: %s", run, error)
    return rows


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of an existing results CSV (none when the file is absent)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def update_results(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``rows`` into the CSV at ``path`` (a run's new row replaces its old one) and write it."""
    merged = {row["run"]: row for row in read_results(path)}
    for row in rows:
        merged[row["run"]] = {name: _csv_value(value) for name, value in row.items()}
    table = list(merged.values())
    write_csv(path, table)
    return table


def _csv_value(value: Any) -> Any:
    """``None`` and NaN as empty cells; floats with 6 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value
