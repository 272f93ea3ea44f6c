"""``hcm tune``: a hyper-parameter search (Optuna) over ordinary hcm runs, then a confirmation
over seeds; ``--grid`` sweeps settings point by point (the paper's Figure 3).

Every trial trains one ordinary run (``hcm runs`` lists it), reports its validation key metric
each epoch to the pruner and returns the best epoch's value:

    <workspace>/runs/<dataset>/tune-<study>-t<NNNN>/            a search trial (tune.json: study, trial, params)
    <workspace>/runs/<dataset>/tune-<study>-t<NNNN>-s<seed>/    a grid point, once per --confirm-seeds seed
    <workspace>/runs/<dataset>/tune-<study>-t<NNNN>-confirm-s<seed>/   the top trials rerun over seeds
    <workspace>/tune/studies.db                                  the embedded SQLite storage (default)
    <workspace>/tune/<study>/    confirm.md/.json, best-config.json (for hcm train --config), history.png,
                                 importance.png; with --grid: grid.md/.json and sensitivity.png

``--workers K`` runs K worker processes on the study with the CPUs shared between them; the same
command on other machines with one ``--storage`` URL joins them. Running the command again
continues the study (its finished trials are kept, a confirmation run already done is reused).
The study's trials and workers: ``hcm.apps.tune_study``; tables and plots: ``hcm.apps.tune_report``;
the study machinery: ``hcm.training.tuning``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hcm.apps.arguments import check_study_kind
from hcm.apps.markdown import markdown_table
from hcm.apps.tune_report import TrialProgress, confirm_markdown, number, plot_sensitivity, save_plots, status_rows
from hcm.apps.tune_study import StudySpec, run_folder, run_workers, train_trial_run, trial_settings
from hcm.core.errors import HcmError, Interrupted, UsageError, report_errors
from hcm.core.files import read_json_object, write_json, write_text
from hcm.core.workspace import Workspace
from hcm.training.data import read_cache_meta
from hcm.training.paper_results import seed_summary
from hcm.training.runs import choose_cache
from hcm.training.search_space import grid_space, parse_space, shipped_space_file
from hcm.training.settings import load_dataset_facts
from hcm.training.tuning import (
    best_first,
    counts,
    default_storage,
    existing_study,
    load_study,
    make_pruner,
    make_sampler,
    open_storage,
    requeue_failed_points,
    shown_url,
)

#: Train settings a best-config file leaves to the machine that trains it.
MACHINE_SETTINGS = ("device", "num_workers", "in_memory", "seed", "skip_nonfinite", "step_graph")


@dataclass
class TuneRequest:
    """What ``hcm tune`` asks for (see ``hcm tune --help``)."""

    features: Path | None = None
    study: str | None = None
    storage: str | None = None
    space: Path | None = None
    grid: Sequence[str] = ()
    trials: int = 20
    workers: int = 1
    pruner: str = "median"
    epochs: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    model_size: str = "auto"
    seed: int = 0
    confirm_seeds: Sequence[int] = (1111, 1112, 1113)
    top: int = 3
    heartbeat: int = 60
    threads: int | None = None
    status: bool = False
    progress: bool = True


# --------------------------------------------------------------------------- the command


def study_spec(workspace: Workspace, request: TuneRequest) -> StudySpec:
    """Check everything before any work: cache, space or grid, settings, names, storage."""
    if request.trials < 1 or request.workers < 1 or request.top < 1 or request.heartbeat < 1:
        raise UsageError("--trials, --workers, --top and --heartbeat must be at least 1")
    if not request.confirm_seeds:
        raise UsageError("--confirm-seeds needs at least one seed")
    cache = choose_cache(workspace.features, request.features)
    meta, _ = read_cache_meta(cache)
    facts = load_dataset_facts(meta.dataset)
    grid = grid_space(list(request.grid))
    check_study_kind(grid, request.space)
    space, source = {}, ""
    if not grid:
        path = request.space or shipped_space_file(meta.dataset)
        space, source = read_json_object(path, "search space"), str(path)
        parse_space(space, source)  # a bad entry is named before any work
    overrides = dict(request.overrides)
    if request.epochs is not None:
        overrides["train.epochs"] = request.epochs
    study = request.study or default_study_name(meta.dataset, meta.profile, grid)
    spec = StudySpec(study, request.storage or default_storage(workspace.root / "tune"), str(cache),
                     str(workspace.runs), meta.dataset, meta.profile, space, source, grid, overrides,
                     request.model_size, grid_size(grid) if grid else request.trials, request.pruner, request.seed,
                     list(request.confirm_seeds), request.heartbeat,
                     "maximize" if facts.higher_is_better else "minimize", facts.key_metric,
                     f"{meta.dataset}/{meta.profile}/{meta.recipe_hash}")
    check_names(spec)
    return spec


def grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in grid.values())


def default_study_name(dataset: str, profile: str, grid: dict[str, list[Any]]) -> str:
    return f"{dataset}-{profile}" + ("-grid-" + "-".join(grid) if grid else "")


def check_names(spec: StudySpec) -> None:
    """Every name of the space or grid must be a setting (one value of each is tried here)."""
    space = spec.search_space()
    values = dict(spec.grid) if spec.grid else {n: d for n, d in space.distributions.items()}
    probe = {}
    for name, dist in values.items():
        if isinstance(dist, list):
            probe[name] = dist[0]
        elif isinstance(dist, optuna.distributions.CategoricalDistribution):
            probe[name] = space.settings({name: dist.choices[0]})[name]
        else:
            probe[name] = dist.low
    trial_settings(spec, probe)  # unknown names raise a UsageError naming them


def resume_command() -> str:
    return "hcm " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "the same hcm tune command"


def tune(workspace: Workspace, request: TuneRequest, console: Console | None = None) -> dict[str, Any]:
    """``hcm tune``: search (or sweep), then confirm the best over seeds, then write the report."""
    console = console or Console()
    spec = study_spec(workspace, request)
    console.print(f"study {spec.study!r} in {shown_url(spec.storage)}: {spec.trials} trial(s) "
                  f"{'on the grid ' + json.dumps(spec.grid) if spec.grid else 'over ' + spec.space_source}, "
                  f"{request.workers} worker(s)", soft_wrap=True, highlight=False)
    storage = open_storage(spec.storage, spec.heartbeat)
    study = load_study(spec.study, storage, spec.identity(), make_sampler(spec.grid, spec.seed),
                       make_pruner("none" if spec.grid else spec.pruner))
    if spec.grid:
        queued = requeue_failed_points(study, spec.grid)
        if queued:
            console.print(f"{queued} grid point(s) whose trial failed are queued again")
    try:
        with TrialProgress(study, spec.trials, request.progress):
            run_workers(spec, request.workers, request.threads)
        finished = sum(counts(study)[state] for state in (TrialState.COMPLETE, TrialState.PRUNED))
        if finished < spec.trials:
            raise HcmError(f"study {spec.study!r} has {finished} of {spec.trials} finished trials (its workers were "
                           f"stopped); continue with: {resume_command()}")
        folder = workspace.root / "tune" / spec.study
        report = sweep_report(study, spec, folder, console) if spec.grid else \
            confirm_report(study, spec, request, folder, console)
    except (KeyboardInterrupt, Interrupted) as stop:
        code = getattr(stop, "exit_code", 130)
        raise Interrupted(f"stopped; the study keeps its finished trials (an interrupted one is marked failed). "
                          f"Continue with: {resume_command()}", code) from None
    save_plots(study, f"valid {spec.key_metric}", folder)
    console.print(f"written: {folder}", soft_wrap=True)
    return report


# --------------------------------------------------------------------------- after the search


def confirm_report(study: optuna.Study, spec: StudySpec, request: TuneRequest, folder: Path,
                   console: Console) -> dict[str, Any]:
    """Rerun the top trials over the confirmation seeds, rank them by mean validation score and
    write the best as a config file for ``hcm train --config``."""
    top = best_first(study, request.top)
    if not top:
        raise HcmError(f"study {spec.study!r} has no complete trial to confirm (see `hcm tune --status "
                       f"--study {spec.study}`)")
    space = spec.search_space()
    ranked = []
    for trial in top:
        values = space.settings(trial.params)
        scores = [train_trial_run(spec, trial.number, values, seed, run_folder(spec, trial.number, f"-confirm-s{seed}"),
                                  "confirm")[0] for seed in spec.confirm_seeds]
        summary = seed_summary(scores)
        ranked.append({"trial": trial.number, "search_value": trial.value, "params": values, "values": scores,
                       "mean": summary.mean, "std": summary.std, "low": summary.low, "high": summary.high})
    ranked.sort(key=lambda r: r["mean"], reverse=spec.direction == "maximize")
    best = ranked[0]
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "best-config.json"
    write_json(config_path, best_config(spec, best))
    report = {"study": spec.study, "storage": shown_url(spec.storage), "metric": f"valid {spec.key_metric}",
              "direction": spec.direction, "confirm_seeds": spec.confirm_seeds, "ranked": ranked,
              "best_config": str(config_path)}
    write_json(folder / "confirm.json", report)
    text = confirm_markdown(report)
    write_text(folder / "confirm.md", text)
    console.print(text, markup=False, highlight=False)
    console.print(f"best: trial {best['trial']}; train it with: hcm train --config {config_path}", soft_wrap=True)
    return report


def best_config(spec: StudySpec, best: dict[str, Any]) -> dict[str, Any]:
    """The best trial's complete settings as ``hcm train --config`` reads them."""
    train_dict, model_dict = trial_settings(spec, best["params"])
    return {"model": model_dict, "train": {k: v for k, v in train_dict.items() if k not in MACHINE_SETTINGS},
            "tuned": {"study": spec.study, "trial": best["trial"], "params": best["params"],
                      "metric": f"valid {spec.key_metric}", "mean": best["mean"], "std": best["std"],
                      "seeds": spec.confirm_seeds, "cache": spec.cache}}


def sweep_report(study: optuna.Study, spec: StudySpec, folder: Path, console: Console) -> dict[str, Any]:
    """The grid's points: mean ± std over the seeds per value; the sensitivity plot."""
    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        values = [float(v) for v in trial.user_attrs.get("values", [])]
        tested = [math.nan if v is None else float(v) for v in trial.user_attrs.get("test_values", [])]
        valid, test = seed_summary(values), seed_summary(tested)
        points.append({"trial": trial.number, "params": dict(trial.params), "values": values,
                       "mean": valid.mean, "std": valid.std, "test_values": tested,
                       "test_mean": test.mean, "test_std": test.std})
    points.sort(key=lambda p: [p["params"].get(n) for n in spec.grid])
    report = {"study": spec.study, "metric": spec.key_metric, "grid": spec.grid,
              "seeds": spec.confirm_seeds, "points": points}
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "grid.json", report)
    headers = list(spec.grid) + ["n", "valid mean ± std", "test mean ± std"]
    rows = [[number(p["params"].get(n)) for n in spec.grid]
            + [str(len(p["values"])), f"{p['mean']:.4f} ± {p['std']:.4f}",
               f"{p['test_mean']:.4f} ± {p['test_std']:.4f}"]
            for p in points]
    text = (f"# hcm tune --grid {spec.study}: {spec.key_metric} over seeds {spec.confirm_seeds}\n\n"
            f"Each run's best epoch is chosen on valid; test scores that epoch once.\n\n"
            + markdown_table(headers, rows))
    write_text(folder / "grid.md", text)
    plot_sensitivity(report, folder / "sensitivity.png")
    console.print(text, markup=False, highlight=False)
    return report


# --------------------------------------------------------------------------- --status


def status(workspace: Workspace, request: TuneRequest, console: Console | None = None) -> optuna.Study:
    """``hcm tune --status``: the study's trials as a table (split to fit 80 columns)."""
    console = console or Console()
    url = request.storage or default_storage(workspace.root / "tune")
    study = existing_study(request.study, open_storage(url, None), url)
    count = counts(study)
    summary = ", ".join(f"{n} {s.name.lower()}" for s, n in count.items() if n)
    best = best_first(study, 1)
    console.print(f"study {study.study_name!r} in {shown_url(url)} ({study.direction.name.lower()} "
                  f"{study.user_attrs.get('dataset', '')}): {summary or 'no trials'}", soft_wrap=True, highlight=False)
    if best:
        console.print(f"best: trial {best[0].number}, value {best[0].value:.4f}", highlight=False)
    console.print(markdown_table(*status_rows(study)), markup=False, highlight=False)
    return study


def tune_command(workspace: Workspace, request: TuneRequest) -> int:
    """``hcm tune`` (or ``--status``) with its errors reported as messages; returns the exit status."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if request.status:
        return report_errors(lambda: status(workspace, request))
    return report_errors(lambda: tune(workspace, request),
                         interrupted=f"stopped; continue with: {resume_command()}")
