"""``hcm report RUN [RUN ...] --out report.html``: one self-contained HTML page about trained runs.

Per run: the command that reproduces it, its settings and provenance (``config.json``), the
training curves with the best epoch marked (``metrics.csv``), the metrics of ``eval/<split>/``
(``hcm evaluate``) as a table also given as Markdown and LaTeX, the confusion matrices (counts
and normalised) or the scatter plot, redrawn from ``predictions.csv``, the t-SNE where
``hcm evaluate --tsne`` drew it, the worst errors with their transcripts (read from the run's
cache), and the robustness table (``hcm evaluate --missing/--noise``). With several runs a
comparison table and overlaid validation curves come first.

The page is rendered from ``apps/templates/report.html.j2`` (jinja2); images are inline PNG
data URIs and its one script is inline, so it opens offline and loads nothing from the network.
Parts a run lacks (not evaluated, no robustness) are named with the command that makes them.
Where the run's dataset is one the paper reports (``configs/paper/results.csv``), the paper's
numbers for the run's variant are a row of the metrics table, with a note when the run's cache is
not the paper's feature profile.
"""

from __future__ import annotations

import base64
import csv
import shlex
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hcm import __version__
from hcm.apps.arguments import check_run_folder
from hcm.apps.markdown import latex_escape
from hcm.core.errors import report_errors
from hcm.core.files import read_json, write_text
from hcm.core.tables import metric_cell
from hcm.training import metrics as M
from hcm.training.evaluate import REGRESSION_COLUMNS, SIMS_COLUMNS, plot_confusion, plot_scatter, score_classes
from hcm.training.paper_results import paper_numbers
from hcm.training.results import read_results
from hcm.training.runs import RunPaths, best_epoch_of, plot_curves
from hcm.training.settings import DatasetFacts

TEMPLATE = "report.html.j2"
WORST = 8
NO_TRANSCRIPT = "(transcript not available: the run's cache cannot be read)"
PAPER_NOTE = ("Rows named \"paper\" are HCMNet's numbers as the paper prints them (Tables 2-4, "
              "configs/paper/results.csv), for runs of a dataset it reports.")


# --------------------------------------------------------------------------- reading a run


@dataclass
class RunReport:
    """Everything the page shows about one run."""

    name: str
    path: str
    config: dict[str, Any]
    command: str
    provenance: list[tuple[str, str]]
    settings: list[tuple[str, str, str]]  # (section, name, value)
    epochs: list[dict[str, float]]
    best_epoch: int | None
    split: str
    metrics: dict[str, Any] | None
    columns: list[tuple[str, str]]
    images: dict[str, str] = field(default_factory=dict)  # what -> data URI
    worst: list[dict[str, Any]] = field(default_factory=list)
    robustness: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    paper: dict[str, float] = field(default_factory=dict)  # metric -> the paper's value (fraction)


def metric_columns(facts: DatasetFacts) -> list[tuple[str, str]]:
    """(key, header) of the metrics table, as ``hcm evaluate`` prints it."""
    if facts.metrics == M.SIMS:
        return SIMS_COLUMNS
    if facts.task == M.REGRESSION:
        return REGRESSION_COLUMNS
    return [(f"f1_{c}", f"F1 {c}") for c in facts.class_names] + [("accuracy", "Acc↑"), ("weighted_f1", "w-F1↑")]


#: A metric as a cell: MAE/Corr as decimals, other metrics in percent, a missing value as '-'.
cell = metric_cell


def read_epochs(path: Path) -> list[dict[str, float]]:
    """metrics.csv as one dict of numbers per epoch (``best`` as 1/0)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            if value in ("True", "False"):
                parsed[key] = float(value == "True")
            else:
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    continue
        out.append(parsed)
    return out


def reproduce_command(config: dict[str, Any]) -> str:
    """``config["command"]`` when the run recorded it, else an ``hcm train`` with the same settings:
    ``--set`` for every setting that differs from the dataset's shipped file and the model size."""
    if config.get("command"):
        return str(config["command"])
    from hcm.apps.train import resolve_settings
    from hcm.model.config import ModelConfig
    from hcm.training.settings import TrainConfig

    try:
        train, model = resolve_settings(config["dataset"], {}, config["profile"], "auto")
        base_train = TrainConfig.from_dict(train).to_dict()
        base_model = ModelConfig.from_dict(model).to_dict()
    except Exception:  # an unknown dataset or an older config: show every setting
        base_train, base_model = {}, {}
    parts = ["hcm", "train", "--features", config["cache"]]
    skip = {"d_text", "d_video", "d_audio", "output_dim", "label_range", "class_weights", "task",
            "num_classes"}  # filled from the cache
    for section, values, base in (("train", config["train"], base_train), ("model", config["model"], base_model)):
        for key, value in values.items():
            if key in skip or (key in base and base[key] == value):
                continue
            parts += ["--set", f"{section}.{key}={format_setting(value)}"]
    return " ".join(shlex.quote(p) for p in parts)


def format_setting(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)


def png_uri(draw) -> str:
    """Call ``draw(path)`` on a temporary file and return the PNG as a data URI."""
    with tempfile.TemporaryDirectory(prefix="hcm-report-") as folder:
        path = Path(folder) / "plot.png"
        draw(path)
        return file_uri(path)


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def scored_rows(rows: list[dict[str, str]], facts: DatasetFacts) -> list[tuple[float, dict[str, str]]]:
    """(error, row) for every row of ``predictions.csv``: |prediction - label|, or 1 - p(label) for classes."""
    if facts.task == M.REGRESSION:
        return [(abs(float(r["prediction"]) - float(r["label"])), r) for r in rows]
    return [(1.0 - float(r.get(f"p_{r['label']}", 0.0)), r) for r in rows]


def shown_value(facts: DatasetFacts):
    """How a label or prediction reads: a signed score, or the class name."""
    return (lambda v: f"{float(v):+.3f}") if facts.task == M.REGRESSION else str


def worst_errors(rows: list[dict[str, str]], facts: DatasetFacts, cache: str, split: str,
                 count: int = WORST) -> list[dict[str, Any]]:
    """The ``count`` largest errors (|prediction - label|, or a wrong class with the lowest p(label))."""
    scored = [(e, r) for e, r in scored_rows(rows, facts)
              if facts.task == M.REGRESSION or r["label"] != r["prediction"]]
    scored.sort(key=lambda pair: -pair[0])
    shown = shown_value(facts)
    chosen = [{"id": r["id"], "label": shown(r["label"]), "prediction": shown(r["prediction"]), "error": f"{e:.3f}"}
              for e, r in scored[:count]]
    texts = transcripts(cache, split, [c["id"] for c in chosen])
    for row in chosen:
        row["text"] = texts.get(row["id"], NO_TRANSCRIPT)
    return chosen


def transcripts(cache: str, split: str, ids: Sequence[str]) -> dict[str, str]:
    """id -> transcript from the cache (no feature data read); {} when the cache is gone."""
    from hcm.cache import FeatureCache

    try:
        with FeatureCache(cache, split=split, features=[]) as reader:
            return {i: reader.get(i).text for i in ids}
    except Exception:  # moved, damaged or re-extracted cache: the table says so per row
        return {}


def collect_run(run_dir: Path, split: str = "test") -> RunReport:
    """Read one run folder into a :class:`RunReport` and draw its plots."""
    paths = RunPaths(check_run_folder(run_dir))
    config = read_json(paths.config, "run config")
    facts = DatasetFacts.from_dict(config["facts"])
    key = config["key_metric"]
    epochs = read_epochs(paths.metrics_csv)
    report = RunReport(
        name=run_dir.name, path=str(run_dir), config=config, command=reproduce_command(config),
        provenance=[(k, str(config.get(k))) for k in ("created", "dataset", "profile", "cache", "recipe_hash",
                                                        "model_factory", "torch", "world_size") if k in config],
        settings=[(section, k, format_setting(v)) for section in ("train", "model")
                  for k, v in config[section].items()],
        epochs=epochs, best_epoch=best_epoch_of(epochs), split=split, metrics=None,
        columns=metric_columns(facts))
    add_paper_numbers(report)
    if epochs:
        report.images["curves"] = png_uri(lambda out: plot_curves({report.name: epochs}, key, out))
    else:
        report.notes.append("no metrics.csv: the run has no finished epoch")
    evaluated = paths.eval_dir(split)
    if (evaluated / "metrics.json").is_file():
        report.metrics = read_json(evaluated / "metrics.json", "evaluation report")
    else:
        report.notes.append(f"not evaluated on {split}: run `hcm evaluate --run {run_dir} --split {split}`")
    if (evaluated / "predictions.csv").is_file():
        rows = read_results(evaluated / "predictions.csv")
        draw_prediction_plots(report, rows, facts)
        report.worst = worst_errors(rows, facts, config["cache"], split)
    if (evaluated / "tsne.png").is_file():
        report.images["tsne"] = file_uri(evaluated / "tsne.png")
    else:
        report.notes.append(f"no t-SNE: run `hcm evaluate --run {run_dir} --split {split} --tsne`")
    if (evaluated / "robustness.json").is_file():
        report.robustness = read_json(evaluated / "robustness.json", "robustness report")
        if (evaluated / "robustness.png").is_file():
            report.images["robustness"] = file_uri(evaluated / "robustness.png")
    else:
        report.notes.append(f"no robustness table: run `hcm evaluate --run {run_dir} --split {split} --missing all "
                            f"--noise 0.25,0.5,1`")
    return report


def add_paper_numbers(report: RunReport) -> None:
    """The paper's numbers for the run's dataset and variant, with a note when the run is not on the
    paper's features (its numbers then only give the scale)."""
    variant = report.config["model"].get("variant", "full")
    numbers = paper_numbers(report.config.get("dataset", ""), variant)
    report.paper = {n.metric: n.fraction for n in numbers}
    if report.paper and report.config.get("profile") != "paper":
        report.notes.append(f"the paper's numbers are for its own features; this run's cache is the "
                            f"{report.config.get('profile')!r} profile, so they only give the scale")


def draw_prediction_plots(report: RunReport, rows: list[dict[str, str]], facts: DatasetFacts) -> None:
    """Scatter and Acc-7/Acc-5 confusion (regression) or the class confusion, titled with run and split."""
    where = f"{report.name} {report.split}"
    if facts.task == M.REGRESSION:
        truth = np.array([float(r["label"]) for r in rows])
        scores = np.array([float(r["prediction"]) for r in rows])
        report.images["scatter"] = png_uri(lambda out: plot_scatter(out, truth, scores, facts, where))
        t_cls, p_cls, names, title = score_classes(truth, scores, facts.metrics)
        report.images["confusion"] = png_uri(lambda out: plot_confusion(out, t_cls, p_cls, names, title=title,
                                                                        where=where))
    else:
        index = {name: k for k, name in enumerate(facts.class_names)}
        truth = np.array([index[r["label"]] for r in rows])
        predicted = np.array([index[r["prediction"]] for r in rows])
        report.images["confusion"] = png_uri(lambda out: plot_confusion(out, truth, predicted, facts.class_names,
                                                                        f1=True, where=where))


# --------------------------------------------------------------------------- tables as text


def metric_rows(report: RunReport) -> list[tuple[str, dict[str, Any]]]:
    if report.metrics is None:
        return []
    rows = [("HCMNet", report.metrics["metrics"]), ("baseline", report.metrics.get("baseline", {}))]
    return rows + [("paper", report.paper)] if report.paper else rows


def markdown_table(columns: list[tuple[str, str]], rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A GitHub Markdown table: one row per method, the metric columns in the printed table's order."""
    lines = ["| Method | " + " | ".join(h for _, h in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += ["| " + name + " | " + " | ".join(cell(k, values.get(k)) for k, _ in columns) + " |"
              for name, values in rows]
    return "\n".join(lines)


def latex_table(columns: list[tuple[str, str]], rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A booktabs tabular with the same cells (↑/↓ written as LaTeX arrows)."""
    lines = [r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(latex_escape(h) for _, h in columns) + r" \\", r"\midrule"]
    lines += [latex_escape(name) + " & " + " & ".join(cell(k, values.get(k)) for k, _ in columns) + r" \\"
              for name, values in rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def comparison_rows(reports: list[RunReport]) -> tuple[list[tuple[str, str]], list[tuple[str, dict[str, Any]]]]:
    """The metric columns shared by every evaluated run, one row per run."""
    evaluated = [r for r in reports if r.metrics is not None]
    if not evaluated:
        return [], []
    shared = [c for c in evaluated[0].columns if all(c in r.columns for r in evaluated)]
    return shared, [(f"{r.name} ({r.config['model'].get('variant', '?')})", r.metrics["metrics"]) for r in evaluated]


# --------------------------------------------------------------------------- the page


def render(reports: list[RunReport]) -> str:
    """The HTML page (jinja2, autoescaped)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("hcm.apps", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(cell=cell)
    columns, rows = comparison_rows(reports)
    overlaid = None
    if len(reports) > 1 and all(r.epochs for r in reports):
        keys = {r.config["key_metric"] for r in reports}
        if len(keys) == 1:
            overlaid = png_uri(lambda out: plot_curves({r.name: r.epochs for r in reports}, keys.pop(), out))
    runs = [{"report": r, "markdown": markdown_table(r.columns, metric_rows(r)),
             "latex": latex_table(r.columns, metric_rows(r))} for r in reports]
    return env.get_template(TEMPLATE).render(
        runs=runs, comparison={"columns": columns, "rows": rows,
                               "markdown": markdown_table(columns, rows) if rows else "",
                               "latex": latex_table(columns, rows) if rows else ""},
        overlaid=overlaid, paper_note=PAPER_NOTE, version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(run_dirs: Sequence[Path], out: Path, split: str = "test") -> Path:
    """Collect every run, render the page, write it atomically to ``out``."""
    reports = [collect_run(Path(run), split) for run in run_dirs]
    write_text(out, render(reports))
    return out


def report_command(run_dirs: Sequence[Path], out: Path, split: str = "test") -> int:
    """``hcm report``: write the page, print where it went; a clear message and exit code on failure."""
    def work() -> None:
        from rich.console import Console

        written = write_report(run_dirs, out, split)
        Console(highlight=False).print(f"wrote {written} ({written.stat().st_size / 1024:.0f} KiB, "
                                       f"{len(run_dirs)} run(s), split {split}); open it in any browser, offline")

    return report_errors(work)
