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

The runs are those of ``hcm train`` (``runs/<dataset>/<run>/``) and the runs an ablation trained
(``runs/<dataset>/<time>-ablation/<setting>-s<seed>/``). Runs trained on several seeds form a seed
group (``hcm train --seeds``: the runs its ``summary.json`` lists; an ablation setting: its runs
of every seed), summarised by :func:`seed_groups` as mean and sample std of each test metric.

The CSV accumulates like MMSA's: a run listed again replaces its own row (matched by its folder),
rows of runs listed earlier stay, and new runs are appended. Reading it needs no torch.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import statistics
from pathlib import Path
from typing import Any

from hcm.core.files import read_json, write_csv
from hcm.training.runs import CONFIG, RunPaths, list_runs

RESULTS_CSV = "results.csv"
SEED_SUMMARY = "summary.json"  # written by ``hcm train --seeds`` into runs/<dataset>/<time>-<variant>-seeds/
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
    for run in list_runs(runs_root, dataset, nested=True):  # hcm train's runs and ablations' (one level deeper)
        try:
            rows.append(run_row(run, split))
        except (ValueError, OSError, KeyError) as error:
            log.warning("skipped run %s: %s", run, error)
    for folder in leftover_folders(runs_root, dataset):
        log.warning("left out %s: it holds no %s, so it is not a run (what is left of a run folder deleted or "
                    "moved during training?); delete it if so", folder, CONFIG)
    return rows


def leftover_folders(runs_root: Path, dataset: str | None = None) -> list[Path]:
    """Folders in ``runs/<dataset>/`` that hold neither a run, nor a seed group, nor an ablation's runs."""
    return [folder for folder in sorted(runs_root.glob(f"{dataset or '*'}/*")) if folder.is_dir()
            and not (folder / CONFIG).is_file() and not (folder / SEED_SUMMARY).is_file()
            and not any(folder.glob(f"*/{CONFIG}"))]


def seed_groups(runs_root: Path, rows: list[dict[str, Any]], dataset: str | None = None,
                split: str = "test") -> list[dict[str, Any]]:
    """One row per seed group with two or more listed runs: its settings, the seeds, and each
    ``<split>_<metric>`` that all its evaluated runs have as ``{"mean", "std", "n"}``."""
    by_run = {str(Path(row["run"])): row for row in rows}
    groups: dict[str, list[dict[str, Any]]] = {}
    for summary in sorted(runs_root.glob(f"{dataset or '*'}/*/{SEED_SUMMARY}")):
        try:
            members = read_json(summary, "seed summary").get("runs", [])
        except (ValueError, OSError, AttributeError) as error:
            log.warning("skipped seed group %s: %s", summary.parent, error)
            continue
        groups[str(summary.parent)] = [by_run[str(Path(run))] for run in members if str(Path(run)) in by_run]
    for row in rows:
        run = Path(row["run"])
        if run.parent.parent.parent == runs_root:  # an ablation's run: <time>-ablation/<setting>-s<seed>
            groups.setdefault(str(run.parent / re.sub(r"-s\d+$", "", run.name)), []).append(row)
    return [_group_row(name, members, split) for name, members in groups.items() if len(members) > 1]


def _group_row(name: str, members: list[dict[str, Any]], split: str) -> dict[str, Any]:
    first = members[0]
    row: dict[str, Any] = {"run": name, "group": "seeds", "dataset": first["dataset"], "variant": first["variant"],
                           "modalities": first["modalities"], "seed": ",".join(str(m["seed"]) for m in members),
                           "runs": [m["run"] for m in members], "key_metric": first["key_metric"]}
    evaluated = [m for m in members if m["evaluated"] == split]
    names = [k for k in first if k.startswith(f"{split}_") and all(k in m for m in evaluated)]
    for key in [f"valid_{first['key_metric']}", *(names if evaluated else [])]:
        values = [m[key] for m in (evaluated if key in names else members) if isinstance(m.get(key), (int, float))]
        if len(values) > 1:
            row[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values), "n": len(values)}
    row["evaluated"] = f"{len(evaluated)} of {len(members)}"
    return row


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
