"""``hcm reproduce``: train the shipped paper settings once per seed and set the test numbers
beside the paper's Tables 2, 3 and 4 (``training/paper_results.py``).

Every seed is an ordinary run (``hcm runs`` lists it), its best epoch chosen on the validation
split only, then evaluated once on test:

    <workspace>/runs/<cache dataset>/reproduce-<paper dataset>-<hash>-<variant>-s<seed>/   one run per seed
    <workspace>/runs/<cache dataset>/reproduce-<paper dataset>-<hash>/                      the comparison
        results.md  results.csv  results.json  results.png  [results.tex with --latex]

``<hash>`` names the settings (cache, train and model settings), so running the same command
again finds its runs: a seed evaluated already is skipped, an interrupted one is resumed from
its last checkpoint, one that stopped before its first checkpoint starts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

from hcm.apps.ablate import VARIANT_NAMES, one_run
from hcm.apps.arguments import check_paper_dataset, check_variants
from hcm.apps.markdown import WIDTH, latex_table, markdown_table
from hcm.apps.train import resolve_settings
from hcm.core.errors import Interrupted, UsageError, report_errors
from hcm.core.files import atomic_write, write_csv, write_json, write_text
from hcm.core.progress import progress_bar
from hcm.core.workspace import Workspace
from hcm.model.config import ModelConfig
from hcm.training.data import read_cache_meta
from hcm.training.evaluate import evaluate_run
from hcm.training.paper_results import (
    LOWER_IS_BETTER,
    PaperNumber,
    display_scale,
    paper_datasets,
    paper_numbers,
    seed_summary,
    show,
)
from hcm.training.results import run_row
from hcm.training.runs import RunPaths, choose_cache, list_caches, start_or_resume
from hcm.training.settings import TrainConfig, load_dataset_facts
from hcm.training.trainer import train

log = logging.getLogger(__name__)
MMSA_SEEDS = (1111, 1112, 1113, 1114, 1115)  # the five seeds the MMSA framework reports over
PAPER_PROFILE = "paper"
#: How the paper writes hcm's variants (Table 4).
VARIANT_TITLES = {**VARIANT_NAMES, "full": "HCMNet"}


@dataclass
class ReproduceRequest:
    """What ``hcm reproduce`` asks for.

    Args:
        dataset: whose paper numbers to compare with (mosei, meld, iemocap); default the cache's.
        features: the cache (default: the workspace's only cache of ``dataset``).
        seeds: one run per seed.
        variants: Table 4 variants to train (``full`` is HCMNet itself).
        epochs: maximum epochs (default: the shipped setting); any other change goes in ``overrides``.
        overrides: further settings as for ``hcm train --set``; the results name them as departures.
        model_size: as ``hcm train --model-size``.
        latex: also write ``results.tex``.
    """

    dataset: str | None = None
    features: Path | None = None
    seeds: Sequence[int] = MMSA_SEEDS
    variants: Sequence[str] = ("full",)
    epochs: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    model_size: str = "auto"
    latex: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Plan:
    """The checked request: cache, paper dataset, settings, and where everything goes."""

    cache: Path
    meta: Any
    dataset: str  # the paper's dataset compared with
    train: dict[str, Any]
    model: dict[str, Any]
    folder: Path
    notes: tuple[str, ...]

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.folder.with_name(f"{self.folder.name}-{variant}-s{seed}")


def pick_cache(workspace: Workspace, dataset: str | None, given: Path | None) -> Path:
    """``given``, else the only cache of ``dataset`` in the workspace, else the workspace's only
    cache (the results then say it is another dataset); a clear error otherwise."""
    if given is not None or dataset is None:
        return choose_cache(workspace.features, given)
    everything = list_caches(workspace.features)
    caches = [c for c in everything if c.parent.name == dataset]
    if len(caches) == 1:
        return caches[0]
    if not caches and len(everything) == 1:
        return everything[0]
    listing = "\n".join(f"  {c}" for c in everything) or "  (none)"
    what = "no" if not caches else f"{len(caches)}"
    raise UsageError(f"the workspace holds {what} feature cache(s) of {dataset!r}; choose one with "
                     f"--features DIR. Caches:\n{listing}")


def check_request(request: ReproduceRequest) -> None:
    """Seeds, variants and the dataset name before anything is read."""
    if not request.seeds:
        raise UsageError("--seeds needs at least one seed, e.g. --seeds 1111,1112,1113")
    if len(set(request.seeds)) != len(request.seeds):
        raise UsageError(f"--seeds lists a seed twice: {list(request.seeds)}")
    check_variants(list(request.variants))
    if request.dataset is not None:
        check_paper_dataset(request.dataset)


def plan(workspace: Workspace, request: ReproduceRequest) -> Plan:
    """Choose the cache, the paper dataset and the settings; name the folder; collect the notes."""
    check_request(request)
    cache = pick_cache(workspace, request.dataset, request.features)
    meta, _ = read_cache_meta(cache)
    dataset = request.dataset or meta.dataset
    if dataset not in paper_datasets():
        raise UsageError(f"the cache {cache} holds {meta.dataset!r}, for which the paper reports no numbers; "
                         f"pass --dataset {' or '.join(paper_datasets())} to compare with one of its tables")
    paper_task = load_dataset_facts(dataset).task
    if meta.task != paper_task:
        raise UsageError(f"the cache {cache} is a {meta.task} cache, but the paper's {dataset} numbers are "
                         f"{paper_task} metrics; choose a {paper_task} cache with --features")
    overrides = dict(request.overrides)
    if request.epochs is not None:
        overrides["train.epochs"] = request.epochs
    train_dict, model_dict = resolve_settings(meta.dataset, overrides, meta.profile, request.model_size)
    identity = json.dumps({"cache": str(Path(cache).resolve()), "train": train_dict, "model": model_dict},
                          sort_keys=True, default=str)
    digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
    folder = workspace.runs / meta.dataset / f"reproduce-{dataset}-{digest}"
    notes = departures(meta, dataset, overrides, model_dict, request)
    return Plan(Path(cache), meta, dataset, train_dict, model_dict, folder, tuple(notes))


def departures(meta: Any, dataset: str, overrides: dict[str, Any], model: dict[str, Any],
               request: ReproduceRequest) -> list[str]:
    """Plain sentences on everything that makes the comparison with the paper not like for like."""
    notes = []
    if meta.dataset != dataset:
        notes.append(f"NOT THE PAPER'S DATASET: the cache holds {meta.dataset!r}, compared with the paper's "
                     f"{dataset} numbers.")
    if meta.profile != PAPER_PROFILE:
        notes.append(f"NOT THE PAPER'S FEATURES: the cache was extracted with the {meta.profile!r} profile, "
                     f"not the paper's encoders (profile 'paper').")
    if overrides:
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
        notes.append(f"Settings changed from the shipped ones: {shown}.")
    if model.get("d_model") is not None and request.model_size != "paper" and meta.profile != PAPER_PROFILE:
        notes.append(f"Model size {request.model_size!r} (d_m {model['d_model']}) for a {meta.profile!r} cache.")
    if len(request.seeds) < 2:
        notes.append("One seed: no standard deviation or confidence interval.")
    return notes


def train_seed(plan_: Plan, variant: str, seed: int, on_epoch: Callable[[int, dict], None]) -> Path:
    """One seed's run: skipped when evaluated, resumed when interrupted, else trained; then evaluated."""
    run = plan_.run_dir(variant, seed)
    paths = RunPaths(run)
    if (paths.eval_dir("test") / "metrics.json").is_file():
        log.info("seed %d of %s is done already: %s", seed, variant, run)
        return run
    cfg = TrainConfig.from_dict({**plan_.train, "seed": seed}, "settings")
    model_cfg = ModelConfig.from_dict({**plan_.model, "variant": variant}, "settings")
    train(plan_.cache, run, cfg, model_cfg, resume=start_or_resume(run), callbacks=[on_epoch], progress=False)
    evaluate_run(run, "test", console=Console(quiet=True))
    return run


def train_all(plan_: Plan, request: ReproduceRequest) -> dict[str, list[dict[str, Any]]]:
    """Every variant and seed; per variant the results rows of its runs (``training/results.py``)."""
    epochs = int(plan_.train.get("epochs", TrainConfig.epochs))
    rows: dict[str, list[dict[str, Any]]] = {}
    with progress_bar(request.progress, "{task.fields[last]}") as bar:
        task = bar.add_task("reproduce", total=len(request.variants) * len(request.seeds) * epochs, last="")
        for variant in request.variants:
            for seed in request.seeds:
                with one_run(bar, task, f"{variant} seed {seed}", epochs) as step:
                    try:
                        run = train_seed(plan_, variant, seed, step)
                    except Interrupted as stop:
                        raise Interrupted(f"stopped during {variant} seed {seed}; its checkpoint and the finished "
                                          f"seeds are kept: run the same hcm reproduce command again to continue",
                                          stop.exit_code) from None
                rows.setdefault(variant, []).append(run_row(run))
    return rows


def compare(dataset: str, task_metrics: list[PaperNumber], variant: str,
            rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per metric: the per-seed test values, their summary, the paper's number and the difference."""
    numbers = paper_numbers(dataset, variant) or [PaperNumber(0, dataset, variant, n.column, n.metric, math.nan, n.unit)
                                                   for n in task_metrics]
    out = []
    for number in numbers:
        values = [row.get(f"test_{number.metric}") for row in rows]
        values = [float(v) if isinstance(v, (int, float)) else math.nan for v in values]
        summary = seed_summary(values)
        paper = number.fraction if math.isfinite(number.value) else math.nan
        out.append({"metric": number.metric, "table": number.table or None, "column": number.column,
                    "per_seed": values, **vars(summary), "paper": paper, "diff": summary.mean - paper,
                    "better": better(number.metric, summary.mean, paper)})
    return out


def better(metric: str, ours: float, paper: float) -> bool | None:
    """Whether our mean beats the paper's number (lower MAE, higher otherwise); None when unknown."""
    if not (math.isfinite(ours) and math.isfinite(paper)):
        return None
    return ours < paper if metric in LOWER_IS_BETTER else ours > paper


def interval(entry: dict[str, Any]) -> str:
    if not math.isfinite(entry["low"]):
        return "-"
    return f"[{show(entry['metric'], entry['low'])}, {show(entry['metric'], entry['high'])}]"


def mean_std(entry: dict[str, Any]) -> str:
    mean = show(entry["metric"], entry["mean"])
    return mean if entry["n"] < 2 else f"{mean} ± {show(entry['metric'], entry['std'])}"


def difference(entry: dict[str, Any]) -> str:
    if not math.isfinite(entry["diff"]):
        return "-"
    factor, digits = display_scale(entry["metric"])
    return f"{entry['diff'] * factor:+.{digits}f}"


def label(entry: dict[str, Any]) -> str:
    return f"{entry['column']} (T{entry['table']})" if entry["table"] else entry["column"]


def summary_cells(entries: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["metric", "n", "mean ± std", "95 % CI", "paper", "diff"]
    rows = [[label(e), str(e["n"]), mean_std(e), interval(e), show(e["metric"], e["paper"]), difference(e)]
            for e in entries]
    return headers, rows


def seed_cells(entries: list[dict[str, Any]], seeds: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    headers = ["seed"] + [e["column"] for e in entries]
    rows = [[str(seed)] + [show(e["metric"], e["per_seed"][i]) for e in entries] for i, seed in enumerate(seeds)]
    return headers, rows


def results_markdown(result: dict[str, Any]) -> str:
    """results.md: what was compared, the notes, then per variant the seeds and the summary."""
    intro = (f"Cache `{result['cache']}` (dataset {result['cache_dataset']}, profile {result['profile']}); "
             f"test split, best epoch chosen on valid; seeds {result['seeds']}. Percentages except MAE "
             f"and Corr; diff = ours - paper; 95 % CI: Student t over seeds.")
    lines = [f"# hcm reproduce: {result['dataset']} against the paper", "", textwrap.fill(intro, WIDTH), ""]
    lines += [textwrap.fill(f"- {note}", WIDTH, subsequent_indent="  ") for note in result["notes"]]
    lines += [""] if result["notes"] else []
    for variant, entries in result["variants"].items():
        lines += [f"## {VARIANT_TITLES[variant]} ({variant})", ""]
        lines.append(markdown_table(*seed_cells(entries, result["seeds"])))
        lines.append(markdown_table(*summary_cells(entries)))
    return "\n".join(lines)


def results_latex(result: dict[str, Any]) -> str:
    parts = []
    for variant, entries in result["variants"].items():
        caption = (f"{VARIANT_TITLES[variant]} on {result['dataset']} (test, {len(result['seeds'])} seeds): "
                   f"mean ± std, 95 % t-interval, the paper's number and the difference.")
        parts.append(latex_table(*summary_cells(entries), caption=caption))
    return "\n".join(parts)


def results_csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Long format, in the tables' units: variant, metric, paper table/column, row (a seed or a
    statistic), value."""
    out = []
    for variant, entries in result["variants"].items():
        for e in entries:
            factor, digits = display_scale(e["metric"])
            cells = [(str(seed), e["per_seed"][i]) for i, seed in enumerate(result["seeds"])]
            cells += [("mean", e["mean"]), ("std", e["std"]), ("ci95_low", e["low"]), ("ci95_high", e["high"]),
                      ("paper", e["paper"]), ("diff", e["diff"])]
            for name, value in cells:
                out.append({"variant": variant, "metric": e["metric"], "paper_table": e["table"] or "",
                            "paper_column": e["column"], "row": name,
                            "value": round(value * factor, digits + 2) if math.isfinite(value) else ""})
    return out


def plot_results(result: dict[str, Any], path: Path) -> None:
    """Per variant and metric: every seed (dots), the mean with its 95 % interval, the paper (x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(v, [e for e in entries if e["metric"] not in ("mae", "corr")],
               [e for e in entries if e["metric"] in ("mae", "corr")]) for v, entries in result["variants"].items()]
    panels = [(v, kind, es) for v, pct, dec in groups for kind, es in (("%", pct), ("", dec)) if es]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 1.0 * sum(len(p[2]) for p in panels) + 2), 4),
                             squeeze=False, gridspec_kw={"width_ratios": [max(len(p[2]), 1) for p in panels]})
    for ax, (variant, unit, entries) in zip(axes[0], panels):
        for x, e in enumerate(entries):
            factor, _ = display_scale(e["metric"])
            seeds = [v * factor for v in e["per_seed"] if math.isfinite(v)]
            ax.scatter([x] * len(seeds), seeds, s=10, color="tab:blue", alpha=0.5)
            if math.isfinite(e["mean"]):
                err = (e["high"] - e["mean"]) * factor if math.isfinite(e["high"]) else 0.0
                ax.errorbar([x + 0.15], [e["mean"] * factor], yerr=[err], fmt="o", color="tab:blue", capsize=3,
                            label="mean, 95 % CI" if x == 0 else None)
            if math.isfinite(e["paper"]):
                ax.scatter([x + 0.3], [e["paper"] * factor], marker="x", color="tab:red",
                           label="paper" if x == 0 else None)
        ax.set_xticks(range(len(entries)), [e["column"] for e in entries], rotation=45, ha="right")
        ax.set_title(f"{VARIANT_TITLES[variant]}" + (" (%)" if unit else ""))
        ax.legend(fontsize=7)
    fig.suptitle(f"hcm reproduce {result['dataset']}: test split, {len(result['seeds'])} seeds "
                 f"(cache {result['cache_dataset']}/{result['profile']})")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_results(result: dict[str, Any], folder: Path, latex: bool) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.md", folder / "results.csv", folder / "results.json", folder / "results.png"]
    write_text(written[0], results_markdown(result))
    write_csv(written[1], results_csv_rows(result))
    write_json(written[2], result)
    plot_results(result, written[3])
    if latex:
        written.append(folder / "results.tex")
        write_text(written[-1], results_latex(result))
    return written


def reproduce(workspace: Workspace, request: ReproduceRequest, console: Console | None = None) -> dict[str, Any]:
    """Train (or find) every seed's run, compare with the paper, write and print the results."""
    console = console or Console()
    plan_ = plan(workspace, request)
    for note in plan_.notes:
        console.print(f"[bold yellow]note:[/] {note}", soft_wrap=True)
    rows = train_all(plan_, request)
    full_metrics = paper_numbers(plan_.dataset, "full")
    result = {"dataset": plan_.dataset, "cache": str(plan_.cache), "cache_dataset": plan_.meta.dataset,
              "profile": plan_.meta.profile, "seeds": list(request.seeds), "notes": list(plan_.notes),
              "train": plan_.train, "model": plan_.model, "folder": str(plan_.folder),
              "runs": {v: [r["run"] for r in rs] for v, rs in rows.items()},
              "variants": {v: compare(plan_.dataset, full_metrics, v, rs) for v, rs in rows.items()}}
    written = write_results(result, plan_.folder, request.latex)
    console.print(results_markdown(result), markup=False, highlight=False)
    console.print(f"written: {plan_.folder}/ ({', '.join(p.name for p in written)})", soft_wrap=True)
    return result


def reproduce_command(workspace: Workspace, request: ReproduceRequest) -> int:
    """``hcm reproduce`` with its errors reported as messages; returns the exit status."""
    return report_errors(lambda: reproduce(workspace, request),
                         interrupted="interrupted; run the same command again to continue (finished seeds are kept)")
