"""``hcm ablate``: train and evaluate the paper's ablations on one cache and tabulate them.

Two families, as in the paper's ablation study:

- component variants (Table 4), all on the three modalities: ``full`` (HCMNet), ``acm-only``,
  ``ccm-only``, ``no-acl`` (w/o ACL, Eq. 7), ``no-graph`` (w/o graph learning, Eq. 8-10) and
  ``no-cdc`` (w/o the composition-level distribution constraint, Eq. 11-12, 15);
- modality subsets (Table 5) of the full model: ``tva``, ``tv``, ``ta``, ``va``.

Every configuration goes through the one training loop (``hcm.training.trainer.train``) once per seed
and is evaluated on the test split by ``hcm.training.evaluate.evaluate_run``. The runs live in
``<workspace>/runs/<dataset>/<time>-ablation/<variant>-<modalities>-s<seed>/`` beside
``ablation.json`` (every number, per seed and mean ± std) and ``ablation.md`` (the table).

With ``hcm.apps.predict`` and ``hcm.apps.quickstart`` this is one of the three ``hcm.model`` modules
allowed to call stage one (``hcm.pipeline``); it needs none of it: it reads an existing cache.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hcm.apps.train import resolve_settings
from hcm.core.errors import report_errors
from hcm.core.files import write_json
from hcm.core.progress import progress_bar
from hcm.model.config import VARIANTS, ModelConfig, parse_modalities
from hcm.training import metrics as M
from hcm.training.data import read_cache_meta
from hcm.training.evaluate import evaluate_run
from hcm.training.runs import choose_cache, new_run_dir
from hcm.training.trainer import TrainConfig, train

MODALITY_SETS = ("tva", "tv", "ta", "va")
VARIANT_NAMES = {"full": "HCMNet (full)", "acm-only": "ACM-only", "ccm-only": "CCM-only", "no-acl": "w/o ACL",
                 "no-graph": "w/o graph learning", "no-cdc": "w/o CDC"}
MODALITY_NAMES = {"t": "T", "v": "V", "a": "A"}
#: Columns of the ablation table per task (metric key, header), as in the paper's Tables 3-5.
COLUMNS = {
    M.CLASSIFICATION: [("accuracy", "Acc↑"), ("weighted_f1", "w-F1↑")],
    M.REGRESSION: [("mae", "MAE↓"), ("corr", "Corr↑"), ("acc7", "Acc-7↑"), ("acc2_non0", "Acc-2↑"),
                   ("f1_non0", "F1↑")],
}


@dataclass(frozen=True)
class Setting:
    """One row of the table: a variant on a modality subset."""

    family: str  # "variant" (Table 4) or "modalities" (Table 5)
    variant: str
    modalities: str

    @property
    def slug(self) -> str:
        return f"{self.variant}-{self.modalities}"

    @property
    def title(self) -> str:
        if self.family == "variant":
            return VARIANT_NAMES[self.variant]
        return "+".join(MODALITY_NAMES[c] for c in sorted(self.modalities, key="vat".index))


@dataclass
class AblationRequest:
    """What ``hcm ablate`` asks for.

    Args:
        features: the cache (default: the workspace's only cache).
        variants: component variants to train on ``tva`` (Table 4).
        modalities: modality subsets to train the full model on (Table 5).
        seeds: one run per seed and setting; the table shows mean ± std.
        epochs: maximum epochs of every run (default: the dataset's shipped setting).
        overrides: further train/model settings, as for ``hcm train --set``.
        split: the split every run is evaluated on.
    """

    features: Path | None = None
    variants: Sequence[str] = VARIANTS
    modalities: Sequence[str] = MODALITY_SETS
    seeds: Sequence[int] = (0,)
    epochs: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    split: str = "test"
    progress: bool = True


def plan_settings(variants: Sequence[str], modalities: Sequence[str]) -> list[Setting]:
    """The rows: each variant on ``tva``, then the full model on each other modality subset."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    subsets = ["".join(name[0] for name in parse_modalities(m)) for m in modalities]  # canonical "tva" order
    if not variants and not subsets:
        raise ValueError("nothing to run: give at least one --variants or --modalities entry")
    rows = [Setting("variant", v, "tva") for v in dict.fromkeys(variants)]
    shared = "full" in variants  # the full T+V+A run serves both tables
    rows += [Setting("modalities", "full", m) for m in dict.fromkeys(subsets) if not (m == "tva" and shared)]
    return rows


def run_settings(dataset: str, request: AblationRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and model settings of the dataset's shipped file with the request's overrides."""
    overrides = dict(request.overrides)
    if request.epochs is not None:
        overrides["train.epochs"] = request.epochs
    return resolve_settings(dataset, overrides)


def _progress(enabled: bool) -> Progress:
    return progress_bar(enabled, "epochs", "{task.fields[last]}")


def train_settings(cache: Path, root: Path, settings: list[Setting], request: AblationRequest,
                   hparams: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, list[dict]]:
    """Train and evaluate every setting once per seed; per-seed metrics keyed by setting slug."""

    train_dict, model_dict = hparams
    epochs = TrainConfig.from_dict(train_dict, "settings").epochs
    results: dict[str, list[dict]] = {}
    with _progress(request.progress) as bar:
        task = bar.add_task("ablation", total=len(settings) * len(request.seeds) * epochs, last="")
        for setting in settings:
            model_cfg = ModelConfig.from_dict({**model_dict, "variant": setting.variant,
                                               "modalities": setting.modalities}, "settings")
            for seed in request.seeds:
                bar.update(task, description=f"ablation {setting.slug} seed {seed}")
                done = bar.tasks[task].completed
                cfg = TrainConfig.from_dict({**train_dict, "seed": seed}, "settings")
                run = root / f"{setting.slug}-s{seed}"
                step = lambda epoch, row: bar.update(task, completed=done + epoch)  # noqa: E731
                train(cache, run, cfg, model_cfg, callbacks=[step], progress=False)
                bar.update(task, completed=done + epochs)
                report = evaluate_run(run, request.split, console=Console(quiet=True))
                results.setdefault(setting.slug, []).append({"seed": seed, "run": str(run), **report["metrics"]})
                bar.update(task, last=_last_line(setting, report))
                baseline = report["baseline"]
    results["baseline"] = [baseline]
    return results


def _last_line(setting: Setting, report: dict[str, Any]) -> str:
    key = report["key_metric"]
    value = report["metrics"].get(key)
    return f"last: {setting.slug} {key} {value:.4f}" if isinstance(value, float) else ""


def format_cell(name: str, value: Any) -> str:
    """MAE/Corr as decimals, every other metric as a percentage; a seed summary as mean ± std."""
    scale, digits = (1.0, 3) if name in ("mae", "corr") else (100.0, 2)
    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        if mean is None or not math.isfinite(mean):
            return "-"
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}" if value.get("n", 1) > 1 \
            else f"{mean * scale:.{digits}f}"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(family, row title, metrics) in table order, the baseline last."""
    rows = [(s["family"], s["title"], s["metrics"]) for s in summary["settings"]]
    rows.append(("baseline", "baseline (" + ("train mean / majority)" if summary["task"] == M.REGRESSION
                                             else "majority class)"), summary["baseline"]))
    return rows


def rich_table(summary: dict[str, Any]) -> Table:
    """The ablation table for the terminal: one section per family, as the paper's Tables 4 and 5."""
    columns = COLUMNS[summary["task"]]
    seeds = summary["seeds"]
    table = Table(title=f"{summary['dataset']} {summary['split']}: ablations ({len(seeds)} seed(s) {seeds}, "
                        f"{summary['epochs']} epochs)")
    table.add_column("Setting", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    previous = None
    for family, title, values in table_rows(summary):
        if previous is not None and family != previous:
            table.add_section()
        table.add_row(title, *[format_cell(key, values.get(key)) for key, _ in columns])
        previous = family
    return table


def markdown_table(summary: dict[str, Any]) -> str:
    """The same table as Markdown, with a header line naming cache, split, seeds and epochs."""
    columns = COLUMNS[summary["task"]]
    lines = [f"# Ablations: {summary['dataset']} ({summary['profile']}), {summary['split']} split", "",
             f"Cache `{summary['cache']}`; seeds {summary['seeds']}; at most {summary['epochs']} epochs; "
             f"mean ± std over seeds.", "",
             "| Family | Setting | " + " | ".join(h for _, h in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    names = {"variant": "Variant (Table 4, T+V+A)", "modalities": "Modalities (Table 5, full model)",
             "baseline": "Trivial baseline"}
    for family, title, values in table_rows(summary):
        cells = " | ".join(format_cell(key, values.get(key)) for key, _ in columns)
        lines.append(f"| {names[family]} | {title} | {cells} |")
    return "\n".join(lines) + "\n"


def ablate(workspace: Any, request: AblationRequest, console: Console | None = None) -> dict[str, Any]:
    """Run the ablations of ``request``; write ``ablation.json`` and ``ablation.md``; print the table.

    Returns the content of ``ablation.json``.
    """

    console = console or Console()
    cache = choose_cache(workspace.features, request.features)
    meta, _ = read_cache_meta(cache)
    settings = plan_settings(request.variants, request.modalities)
    if not request.seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0 or --seeds 0,1,2")
    hparams = run_settings(meta.dataset, request)
    root = new_run_dir(workspace.runs, meta.dataset, "ablation")
    per_seed = train_settings(cache, root, settings, request, hparams)
    summary = {
        "dataset": meta.dataset, "profile": meta.profile, "task": meta.task, "cache": str(cache),
        "split": request.split, "seeds": list(request.seeds), "epochs": hparams[0].get("epochs"),
        "settings": [{**dataclasses.asdict(s), "title": s.title, "slug": s.slug,
                      "metrics": M.summarize_seeds([_numbers(r) for r in per_seed[s.slug]]),
                      "per_seed": per_seed[s.slug]} for s in settings],
        "baseline": per_seed["baseline"][0], "train": hparams[0], "model": hparams[1], "folder": str(root),
    }
    write_json(root / "ablation.json", summary)
    (root / "ablation.md").write_text(markdown_table(summary), encoding="utf-8")
    console.print(rich_table(summary))
    console.print(f"written: {root / 'ablation.md'} and ablation.json")
    return summary


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "seed"}


def ablate_command(workspace: Any, request: AblationRequest) -> int:
    """``hcm ablate`` with known errors printed as one message; returns the exit status."""
    return report_errors(lambda: ablate(workspace, request))
