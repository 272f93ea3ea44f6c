"""What the runs, run, compare and studies pages show, read from the workspace (no web types here).

The runs table is ``hcm runs``' (``hcm.training.results.collect_rows``); a run page is ``hcm
report``'s content (``hcm.apps.report.collect_run``: metrics, curves, plots), kept until the run's
files change; the per-sample table is the run's ``eval/<split>/predictions.csv`` with each item's
transcript from the run's cache and its error, and the clip where the workspace holds it.
Drawing goes through one lock: matplotlib's pyplot is not thread-safe.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcm.apps.report import (
    NO_TRANSCRIPT,
    RunReport,
    collect_run,
    comparison_rows,
    png_uri,
    scored_rows,
    shown_value,
    transcripts,
)
from hcm.apps.results import SHOWN
from hcm.apps.serve.clips import ClipIndex, ClipRef
from hcm.core.tables import metric_cell
from hcm.core.workspace import Workspace
from hcm.model.config import SAVED_BEFORE
from hcm.training.results import collect_rows, read_results
from hcm.training.runs import CONFIG, RunPaths, list_runs, plot_curves
from hcm.training.settings import DatasetFacts

RUN_COLUMNS = [("run", "run"), ("dataset", "dataset"), ("reading", "reading"), ("variant", "variant"),
               ("modalities", "mod."), ("seed", "seed"), ("study", "study"), ("best_epoch", "best"),
               ("valid", "valid")]
SAMPLE_COLUMNS = [("id", "id"), ("text", "transcript"), ("label", "label"), ("prediction", "prediction"),
                  ("error", "error")]
PLOTS = threading.Lock()


class UnknownRun(LookupError):
    """A run name that is not one of the workspace's runs."""


@dataclass
class RunPage:
    """One run page: the report, the sample rows and where their clips are."""

    key: str
    report: RunReport
    samples: list[dict[str, Any]]
    clips: dict[str, ClipRef]


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """Rows by ``key`` (numbers as numbers, else as text); rows without a value stay last either way."""
    def missing(value: Any) -> bool:
        return value is None or value == "" or (isinstance(value, float) and math.isnan(value))

    present = [row for row in rows if not missing(row.get(key))]
    numeric = all(isinstance(row[key], (int, float)) for row in present)
    present.sort(key=lambda row: row[key] if numeric else str(row[key]), reverse=descending)
    return present + [row for row in rows if missing(row.get(key))]


class Pages:
    """The workspace's pages, with the run reports and clip index kept between requests."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.clip_index = ClipIndex(workspace)
        self._reports: dict[tuple[str, str], tuple[tuple, RunReport]] = {}
        self._overlaid: dict[tuple, str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ runs

    def run_dir(self, key: str) -> Path:
        """The run folder named ``key`` (``<dataset>/<run>`` under runs/), only if it is a listed run."""
        runs = {self.key(p): p for p in list_runs(self.workspace.runs, nested=True)}
        if key not in runs:
            raise UnknownRun(f"no run {key!r} in {self.workspace.runs}; the runs page lists them")
        return runs[key]

    def key(self, run_dir: Path) -> str:
        return Path(run_dir).relative_to(self.workspace.runs).as_posix()

    def runs_table(self, dataset: str = "", reading: str = "", study: str = "", sort: str = "run",
                   descending: bool = False) -> dict[str, Any]:
        """The rows of ``hcm runs`` (filtered and sorted), their metric columns and the filter choices."""
        rows = collect_rows(self.workspace.runs) if self.workspace.runs.is_dir() else []
        for position, row in enumerate(rows):
            row["key"] = row["run"] = self.key(Path(row["run"]))
            row["valid"] = row.get(f"valid_{row['key_metric']}")
            row["reading"] = row.get("reading") or SAVED_BEFORE["reading"]  # a run from before readings existed
            row["order"] = position  # oldest first, as hcm runs lists them (names tie within a second)
        choices = {name: sorted({str(r.get(name)) for r in rows if r.get(name)}) for name in ("dataset", "reading",
                                                                                                 "study")}
        kept = [r for r in rows if (not dataset or r["dataset"] == dataset) and (not reading or r["reading"] == reading)
                and (not study or r.get("study") == study)]
        metrics = [(f"test_{name}", header) for task in SHOWN.values() for name, header in task.items()
                   if any(f"test_{name}" in r for r in kept)]
        by = "order" if sort == "run" else sort  # a run's name is its start time and variant: sort by time
        return {"rows": sort_rows(kept, by, descending), "columns": RUN_COLUMNS + metrics, "choices": choices,
                "total": len(rows), "cell": table_cell}

    # ------------------------------------------------------------------ one run

    def report(self, run_dir: Path, split: str) -> RunReport:
        """``hcm report``'s content for one run, drawn again only when its files changed."""
        stamp = files_stamp(run_dir, split)
        with self._lock:
            kept = self._reports.get((str(run_dir), split))
        if kept and kept[0] == stamp:
            return kept[1]
        with PLOTS:
            report = collect_run(run_dir, split)
        with self._lock:
            self._reports[(str(run_dir), split)] = (stamp, report)
        return report

    def run_page(self, key: str, split: str = "test", sort: str = "error", descending: bool = True) -> RunPage:
        run_dir = self.run_dir(key)
        report = self.report(run_dir, split)
        samples = self.samples(report, run_dir, split)
        clips = self.clip_index.clips(str(report.config.get("dataset", "")))
        for row in samples:
            row["clip"] = clips.get(row["id"])
        return RunPage(key, report, sort_rows(samples, sort, descending), clips)

    def samples(self, report: RunReport, run_dir: Path, split: str) -> list[dict[str, Any]]:
        """Every item of ``eval/<split>/predictions.csv``: id, transcript, label, prediction, error."""
        rows = read_results(RunPaths(run_dir).eval_dir(split) / "predictions.csv")
        if not rows:
            return []
        facts = DatasetFacts.from_dict(report.config["facts"])
        shown = shown_value(facts)
        texts = transcripts(report.config["cache"], split, [r["id"] for r in rows])
        return [{"id": r["id"], "text": texts.get(r["id"], NO_TRANSCRIPT), "label": shown(r["label"]),
                 "prediction": shown(r["prediction"]), "error": round(error, 4)}
                for error, r in scored_rows(rows, facts)]

    # ------------------------------------------------------------------ several runs

    def compare(self, keys: list[str], split: str = "test") -> dict[str, Any]:
        """Runs side by side: the shared metric columns, overlaid validation curves, each run's curves."""
        reports = [self.report(self.run_dir(key), split) for key in keys]
        columns, rows = comparison_rows(reports)
        key_metrics = {r.config["key_metric"] for r in reports}
        overlaid = None
        if len(key_metrics) == 1 and all(r.epochs for r in reports):
            overlaid = self.overlaid(reports, next(iter(key_metrics)))
        return {"reports": list(zip(keys, reports)), "columns": columns, "rows": rows, "overlaid": overlaid,
                "key_metrics": sorted(key_metrics)}

    def overlaid(self, reports: list[RunReport], key_metric: str) -> str:
        """The runs' validation curves in one picture, drawn again only when a run's report changed."""
        key = tuple((r.path, files_stamp(Path(r.path), r.split)) for r in reports)
        with self._lock:
            if key in self._overlaid:
                return self._overlaid[key]
        with PLOTS:
            picture = png_uri(lambda out: plot_curves({r.name: r.epochs for r in reports}, key_metric, out))
        with self._lock:
            self._overlaid[key] = picture
        return picture

    # ------------------------------------------------------------------ studies

    def studies(self) -> dict[str, Any]:
        """The ``hcm tune`` studies of the workspace's default storage, with their pictures."""
        db = self.workspace.root / "tune" / "studies.db"
        if not db.is_file():
            return {"storage": None, "studies": []}
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = f"sqlite:///{db}"
        studies = []
        for summary in optuna.get_all_study_summaries(url, include_best_trial=True):
            folder = self.workspace.root / "tune" / summary.study_name
            best = summary.best_trial
            studies.append({"name": summary.study_name, "trials": summary.n_trials,
                            "direction": summary.direction.name.lower() if summary.direction else "",
                            "best": best.value if best else None, "params": best.params if best else {},
                            "history": self.relative(folder / "history.png"),
                            "confirm": self.relative(folder / "confirm.md")})
        return {"storage": url, "studies": studies}

    def relative(self, path: Path) -> str | None:
        """``path`` relative to the workspace when it is a file there (for the file route)."""
        return path.relative_to(self.workspace.root).as_posix() if path.is_file() else None


def files_stamp(run_dir: Path, split: str) -> tuple:
    """What a run's report depends on: the names, sizes and times of its config, curves and split's files."""
    paths = [run_dir / CONFIG, RunPaths(run_dir).metrics_csv, *sorted(RunPaths(run_dir).eval_dir(split).glob("*"))]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())


def table_cell(name: str, row: dict[str, Any]) -> str:
    """A runs-table cell: metrics as ``hcm runs`` prints them, other values as text."""
    if name == "valid":
        return f"{row['key_metric']} {metric_cell(row['key_metric'], row.get('valid'))}"
    if name.startswith("test_"):
        return metric_cell(name.removeprefix("test_"), row.get(name))
    if name == "best_epoch":
        return f"{row.get('best_epoch') or '-'}/{row.get('epochs')}"
    return "-" if row.get(name) in (None, "") else str(row[name])
