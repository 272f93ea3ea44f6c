"""``hcm ablate``: train and evaluate the paper's ablations on one cache and tabulate them.

Two families, as in the paper's ablation study:

- component variants (Table 4), all on the three modalities: ``full`` (HCMNet), ``acm-only``,
  ``ccm-only``, ``no-acl`` (w/o ACL, Eq. 7), ``no-graph`` (w/o graph learning, Eq. 8-10) and
  ``no-cdc`` (w/o the composition-level distribution constraint, Eq. 11-12, 15);
- modality subsets (Table 5) of the full model: ``tva``, ``tv``, ``ta``, ``va``;
- readings (docs/model.md): the full model under ``--readings paper,hcm``, and each reading
  switch of ``--switches`` turned to hcm's value on top of the ``paper`` reading.

Component and modality rows take the reading of the settings (``--set reading=paper``);
reading rows set every switch themselves. Several ``--features`` caches are run one after
another, each into its own folder and table.

Every configuration goes through the one training loop (``hcm.training.trainer.train``) once per seed
and is evaluated on the test split by ``hcm.training.evaluate.evaluate_run``. The runs live in
``<workspace>/runs/<dataset>/<time>-ablation/<slug>-s<seed>/`` beside ``ablation.json`` (every
number, per seed and mean ± std, the best epoch's validation metrics as ``valid_*``) and
``ablation.md`` (the table: test columns, then validation columns).

As an ``hcm.apps`` module it may call stage one (``hcm.pipeline``); it needs none of it: it reads
an existing cache.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from hcm.apps.train import resolve_settings
from hcm.core.errors import report_errors
from hcm.core.files import write_json
from hcm.core.progress import progress_bar
from hcm.core.tables import UNITS, metric_cell, print_table
from hcm.model.config import READING_SWITCHES, READINGS, SWITCHES_BY_NAME, VARIANTS, ModelConfig, parse_modalities
from hcm.training import metrics as M
from hcm.training.data import read_cache_meta
from hcm.training.evaluate import evaluate_run
from hcm.training.runs import choose_cache, new_run_dir
from hcm.training.settings import TrainConfig
from hcm.training.trainer import train

MODALITY_SETS = ("tva", "tv", "ta", "va")
VARIANT_NAMES = {"full": "HCMNet (full)", "acm-only": "ACM-only", "ccm-only": "CCM-only", "no-acl": "w/o ACL",
                 "no-graph": "w/o graph learning", "no-cdc": "w/o CDC"}
MODALITY_NAMES = {"t": "T", "v": "V", "a": "A"}
#: Switches that cannot be changed alone on top of ``paper`` (they need others changed too).
NOT_ALONE = {"node_count": "native node counts need the text-anchored Eq. 12 as well; "
                           "the hcm reading row measures them together"}
#: Columns of the ablation table per task (metric key, header), as in the paper's Tables 3-5.
COLUMNS = {
    M.CLASSIFICATION: [("accuracy", "Acc↑"), ("weighted_f1", "w-F1↑")],
    M.REGRESSION: [("mae", "MAE↓"), ("corr", "Corr↑"), ("acc7", "Acc-7↑"), ("acc2_non0", "Acc-2↑"),
                   ("f1_non0", "F1↑")],
}


@dataclass(frozen=True)
class Setting:
    """One row of the table: a variant on a modality subset, or a reading of the full model."""

    family: str  # "variant" (Table 4), "modalities" (Table 5) or "reading"
    variant: str
    modalities: str
    reading: str | None = None  # reading rows: "paper" or "hcm"
    switch: str | None = None  # reading rows: this switch at hcm's value on top of ``reading``

    @property
    def slug(self) -> str:
        if self.family == "reading":
            return self.reading + (f"+{self.switch}" if self.switch else "")
        return f"{self.variant}-{self.modalities}"

    @property
    def title(self) -> str:
        if self.family == "variant":
            return VARIANT_NAMES[self.variant]
        if self.family == "reading":
            if self.switch is None:
                return f"`{self.reading}` reading"
            return f"`paper` + {self.switch}={SWITCHES_BY_NAME[self.switch].hcm}"
        return "+".join(MODALITY_NAMES[c] for c in sorted(self.modalities, key="vat".index))

    def model_settings(self, base: dict[str, Any]) -> dict[str, Any]:
        """The model settings of this row over ``base``; reading rows fix every switch."""
        values = {**base, "variant": self.variant, "modalities": self.modalities}
        if self.family == "reading":
            values.update({sw.name: sw.value(self.reading) for sw in READING_SWITCHES}, reading=self.reading)
            if self.switch:
                values[self.switch] = SWITCHES_BY_NAME[self.switch].hcm
        return values


@dataclass
class AblationRequest:
    """What ``hcm ablate`` asks for.

    Args:
        features: the cache (default: the workspace's only cache).
        variants: component variants to train on ``tva`` (Table 4); ``None``: all of them, or
            none when readings or switches are asked for.
        modalities: modality subsets to train the full model on (Table 5); ``None`` as for variants.
        readings: readings of the full model (``paper``, ``hcm``).
        switches: reading switches, each turned to hcm's value on top of ``paper`` (``all``: every one).
        seeds: one run per seed and setting; the table shows mean ± std.
        epochs: maximum epochs of every run (default: the dataset's shipped setting).
        overrides: further train/model settings, as for ``hcm train --set``.
        split: the split every run is evaluated on.
    """

    features: Path | Sequence[Path] | None = None
    variants: Sequence[str] | None = None
    modalities: Sequence[str] | None = None
    readings: Sequence[str] = ()
    switches: Sequence[str] = ()
    seeds: Sequence[int] = (0,)
    epochs: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    split: str = "test"
    progress: bool = True

    def rows(self, task: str) -> list[Setting]:
        """The table rows for a cache of ``task`` (switch names checked and expanded)."""
        by_default = not self.readings and not self.switches
        variants = self.variants if self.variants is not None else (VARIANTS if by_default else ())
        modalities = self.modalities if self.modalities is not None else (MODALITY_SETS if by_default else ())
        return plan_settings(variants, modalities, self.readings, expand_switches(self.switches, task))


def expand_switches(switches: Sequence[str], task: str | None = None) -> list[str]:
    """``["all"]`` -> every switch that can change alone (and matters for ``task``); names checked."""
    if list(switches) == ["all"]:
        return [sw.name for sw in READING_SWITCHES if sw.name not in NOT_ALONE
                and not (sw.name == "output_mapping" and task == M.CLASSIFICATION)]
    unknown = [s for s in switches if s not in SWITCHES_BY_NAME]
    if unknown:
        raise ValueError(f"unknown switch(es) {unknown}; choose from {', '.join(SWITCHES_BY_NAME)} or 'all'")
    alone = [f"{s}: {NOT_ALONE[s]}" for s in switches if s in NOT_ALONE]
    if alone:
        raise ValueError("cannot change alone on top of paper: " + "; ".join(alone))
    return list(switches)


def plan_settings(variants: Sequence[str], modalities: Sequence[str], readings: Sequence[str] = (),
                  switches: Sequence[str] = ()) -> list[Setting]:
    """The rows: each variant on ``tva``, the full model on each other modality subset, the readings."""
    unknown = [v for v in variants if v not in VARIANTS] + [r for r in readings if r not in READINGS]
    if unknown:
        raise ValueError(f"unknown variant(s) or reading(s) {unknown}; variants: {', '.join(VARIANTS)}; "
                         f"readings: {', '.join(READINGS)}")
    subsets = ["".join(name[0] for name in parse_modalities(m)) for m in modalities]  # canonical "tva" order
    if not variants and not subsets and not readings and not switches:
        raise ValueError("nothing to run: give at least one --variants, --modalities, --readings or --switches entry")
    rows = [Setting("variant", v, "tva") for v in dict.fromkeys(variants)]
    shared = "full" in variants  # the full T+V+A run serves both tables
    rows += [Setting("modalities", "full", m) for m in dict.fromkeys(subsets) if not (m == "tva" and shared)]
    rows += [Setting("reading", "full", "tva", reading=r) for r in dict.fromkeys(readings)]
    rows += [Setting("reading", "full", "tva", reading="paper", switch=s) for s in dict.fromkeys(switches)]
    return rows


def run_settings(dataset: str, request: AblationRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and model settings of the dataset's shipped file with the request's overrides."""
    overrides = dict(request.overrides)
    if request.epochs is not None:
        overrides["train.epochs"] = request.epochs
    return resolve_settings(dataset, overrides)


def _progress(enabled: bool) -> Progress:
    return progress_bar(enabled, "epochs", "{task.fields[last]}")


@contextmanager
def one_run(bar: Progress, task: TaskID, description: str, epochs: int) -> Iterator[Callable[[int, Any], None]]:
    """One training run of ``epochs`` on a bar over several: yields the per-epoch callback that
    advances the bar; a run that ends early (early stopping) leaves it at its full ``epochs``."""
    bar.update(task, description=description)
    done = bar.tasks[task].completed
    yield lambda epoch, row: bar.update(task, completed=done + epoch)
    bar.update(task, completed=done + epochs)


def train_settings(cache: Path, root: Path, settings: list[Setting], request: AblationRequest,
                   hparams: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, list[dict]]:
    """Train and evaluate every setting once per seed; per-seed metrics keyed by setting slug."""

    train_dict, model_dict = hparams
    epochs = TrainConfig.from_dict(train_dict, "settings").epochs
    results: dict[str, list[dict]] = {}
    with _progress(request.progress) as bar:
        task = bar.add_task("ablation", total=len(settings) * len(request.seeds) * epochs, last="")
        for setting in settings:
            model_cfg = ModelConfig.from_dict(setting.model_settings(model_dict), "settings")
            for seed in request.seeds:
                cfg = TrainConfig.from_dict({**train_dict, "seed": seed}, "settings")
                run = root / f"{setting.slug}-s{seed}"
                with one_run(bar, task, f"ablation {setting.slug} seed {seed}", epochs) as step:
                    result = train(cache, run, cfg, model_cfg, callbacks=[step], progress=False)
                report = evaluate_run(run, request.split, console=Console(quiet=True))
                valid = {f"valid_{k}": v for k, v in result.best_valid.items()}
                results.setdefault(setting.slug, []).append({"seed": seed, "run": str(run), **report["metrics"],
                                                             **valid})
                bar.update(task, last=_last_line(setting, report))
                baseline = report["baseline"]
    results["baseline"] = [baseline]
    return results


def _last_line(setting: Setting, report: dict[str, Any]) -> str:
    key = report["key_metric"]
    value = report["metrics"].get(key)
    return f"last: {setting.slug} {key} {value:.4f}" if isinstance(value, float) else ""


#: MAE/Corr as decimals, every other metric as a percentage; a seed summary as mean ± std.
format_cell = metric_cell


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(family, row title, metrics) in table order, the baseline last."""
    rows = [(s["family"], s["title"], s["metrics"]) for s in summary["settings"]]
    rows.append(("baseline", "baseline (" + ("train mean / majority)" if summary["task"] == M.REGRESSION
                                             else "majority class)"), summary["baseline"]))
    return rows


def table_columns(task: str) -> list[tuple[str, str]]:
    """(metric key, header): the evaluated split's metrics, then the key ones on validation."""
    columns = COLUMNS[task]
    return columns + [(f"valid_{key}", f"valid {header}") for key, header in columns[:2]]


def rich_table(summary: dict[str, Any]) -> Table:
    """The ablation table for the terminal: one section per family, as the paper's Tables 4 and 5.

    It shows the evaluated split; the Markdown file adds the validation columns.
    """
    columns = COLUMNS[summary["task"]]
    seeds = summary["seeds"]
    table = Table(title=f"{summary['dataset']} {summary['split']}: ablations ({len(seeds)} seed(s) {seeds}, "
                        f"{summary['epochs']} epochs)", caption=UNITS)
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
    columns = table_columns(summary["task"])
    lines = [f"# Ablations: {summary['dataset']} ({summary['profile']}), {summary['split']} split", "",
             f"Cache `{summary['cache']}`; seeds {summary['seeds']}; at most {summary['epochs']} epochs; "
             f"mean ± std over seeds.", "",
             "| Family | Setting | " + " | ".join(h for _, h in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    names = {"variant": "Variant (Table 4, T+V+A)", "modalities": "Modalities (Table 5, full model)",
             "reading": "Reading (full model, T+V+A)", "baseline": "Trivial baseline"}
    for family, title, values in table_rows(summary):
        cells = " | ".join(format_cell(key, values.get(key)) for key, _ in columns)
        lines.append(f"| {names[family]} | {title} | {cells} |")
    return "\n".join(lines) + "\n"


def ablate(workspace: Any, request: AblationRequest, console: Console | None = None) -> list[dict[str, Any]]:
    """Run the ablations of ``request`` on each cache; write ``ablation.json`` and ``ablation.md``
    per cache; print the tables. Every cache and setting is checked before the first run.

    Returns the content of each cache's ``ablation.json``.
    """
    console = console or Console()
    if not request.seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0 or --seeds 0,1,2")
    given = request.features
    wanted = list(given) if isinstance(given, (list, tuple)) else [given]
    caches = [choose_cache(workspace.features, cache) for cache in wanted]
    plans = []
    for cache in caches:
        meta, _ = read_cache_meta(cache)
        plans.append((cache, meta, request.rows(meta.task), run_settings(meta.dataset, request)))
    return [ablate_cache(workspace, *plan, request, console) for plan in plans]


def ablate_cache(workspace: Any, cache: Path, meta: Any, settings: list[Setting],
                 hparams: tuple[dict[str, Any], dict[str, Any]], request: AblationRequest,
                 console: Console) -> dict[str, Any]:
    """Train and evaluate ``settings`` on one cache; write its table files."""
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
    print_table(console, rich_table(summary))
    console.print(f"written: {root / 'ablation.md'} and ablation.json")
    return summary


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "seed"}


def ablate_command(workspace: Any, request: AblationRequest) -> int:
    """``hcm ablate`` with known errors printed as one message; returns the exit status."""
    return report_errors(lambda: ablate(workspace, request))
