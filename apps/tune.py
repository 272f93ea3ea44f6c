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
Tables and plots: ``hcm.apps.tune_report``; the study machinery: ``hcm.training.tuning``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from hcm.apps.markdown import markdown_table
from hcm.apps.train import resolve_settings
from hcm.apps.tune_report import TrialProgress, confirm_markdown, number, plot_sensitivity, save_plots, status_rows
from hcm.core.errors import HcmError, Interrupted, UsageError, report_errors
from hcm.core.files import json_safe, read_json, read_json_object, write_json, write_text
from hcm.core.threads import set_threads, usable_cpus
from hcm.core.workspace import Workspace
from hcm.model.config import ModelConfig
from hcm.training.data import read_cache_meta
from hcm.training.evaluate import evaluate_run
from hcm.training.paper_results import seed_summary
from hcm.training.results import TUNING_RECORD as TRIAL_FILE
from hcm.training.runs import choose_cache, start_or_resume
from hcm.training.search_space import SearchSpace, grid_space, parse_space, shipped_space_file
from hcm.training.settings import TrainConfig, load_dataset_facts
from hcm.training.trainer import train
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
    work_until,
)

log = logging.getLogger(__name__)
#: Train settings a best-config file leaves to the machine that trains it.
MACHINE_SETTINGS = ("device", "num_workers", "in_memory", "seed", "skip_nonfinite")
MAX_FAILED_IN_A_ROW = 5  # a worker whose trials keep failing on invalid settings stops


class InvalidTrialSettings(HcmError, ValueError):
    """A sampled combination the model refuses (e.g. d_model not divisible by num_heads): the
    trial is marked failed with this message and the search goes on."""


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


@dataclass
class StudySpec:
    """What a worker process needs to join the study (plain data: it crosses a process spawn)."""

    study: str
    storage: str
    cache: str
    runs: str
    dataset: str
    profile: str
    space: dict[str, Any]
    space_source: str
    grid: dict[str, list[Any]]
    overrides: dict[str, Any]
    model_size: str
    trials: int
    pruner: str
    seed: int
    confirm_seeds: list[int]
    heartbeat: int
    direction: str
    key_metric: str
    recipe: str  # "<dataset>/<profile>/<recipe hash>" of the cache

    def identity(self) -> dict[str, Any]:
        """What makes the study: the cache by its content (its path may differ between machines)."""
        return {"cache": self.recipe, "dataset": self.dataset, "space": self.space, "grid": self.grid,
                "settings": {"overrides": self.overrides, "model_size": self.model_size},
                "direction": self.direction}

    def search_space(self) -> SearchSpace:
        return parse_space(self.space, self.space_source) if self.space else SearchSpace({})


# --------------------------------------------------------------------------- a trial


def suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
    """Ask the trial for ``name`` from ``dist`` through the public suggest API."""
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(name, dist.choices)


def trial_settings(spec: StudySpec, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and model settings of a trial: shipped file, model size, ``--set``, the trial's values."""
    return resolve_settings(spec.dataset, {**spec.overrides, **values}, spec.profile, spec.model_size)


def run_folder(spec: StudySpec, number: int, suffix: str = "") -> Path:
    return Path(spec.runs) / spec.dataset / f"tune-{spec.study}-t{number:04d}{suffix}"


def train_trial_run(spec: StudySpec, number: int, values: dict[str, Any], seed: int, run: Path, role: str,
                    trial: optuna.Trial | None = None, test: bool = False) -> tuple[float, float | None]:
    """One ordinary run of a trial's settings; returns its best validation value and (``test``)
    that epoch's test value. ``trial`` set: each epoch is reported to the pruner; ``test``: the
    best epoch is also scored on the test split (grid sweeps, which report it beside validation
    as the paper's Figure 3 does).

    A run finished earlier (its tune.json holds a value) is not trained again; one interrupted
    after a checkpoint is resumed."""
    marker = run / TRIAL_FILE
    done = read_json(marker, "trial record") if marker.is_file() else {}
    if "value" in done:
        return float(done["value"]), done.get("test")
    train_dict, model_dict = trial_settings(spec, values)
    try:
        model_cfg = ModelConfig.from_dict(model_dict, f"trial {number}")
        cfg = TrainConfig.from_dict({**train_dict, "seed": seed}, f"trial {number}")
    except ValueError as error:
        message = f"trial {number} failed: {values} is not a valid setting ({error}); the search goes on"
        log.warning(message)
        raise InvalidTrialSettings(message) from error
    record = {"study": spec.study, "trial": number, "role": role, "seed": seed, "params": values,
              "storage": shown_url(spec.storage)}
    resume = start_or_resume(run)
    run.mkdir(parents=True, exist_ok=True)
    write_json(marker, record)
    callbacks = [] if trial is None else [pruning_callback(trial, spec.key_metric)]
    result = train(spec.cache, run, cfg, model_cfg, resume=resume, callbacks=callbacks, progress=False)
    record.update(value=result.best_value, best_epoch=result.best_epoch)
    if test:
        report = evaluate_run(run, "test", console=Console(quiet=True))
        record["test"] = report["metrics"].get(spec.key_metric)
    write_json(marker, record)
    return result.best_value, json_safe(record.get("test"))  # as tune.json holds it


def pruning_callback(trial: optuna.Trial, key: str):
    """Report the epoch's validation metric; stop the run when the pruner says so."""
    def report(epoch: int, row: dict[str, Any]) -> None:
        value = row.get(f"valid_{key}")
        if isinstance(value, (int, float)) and math.isfinite(value):
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"valid {key} {value:.4f} at epoch {epoch}")
    return report


def objective(spec: StudySpec, space: SearchSpace):
    """The study's objective: search trials train once (seed ``--seed``) with pruning; grid points
    train once per ``--confirm-seeds`` seed and return the mean."""
    def run(trial: optuna.Trial) -> float:
        if spec.grid:
            values = {name: trial.suggest_categorical(name, choices) for name, choices in spec.grid.items()}
        else:
            values = space.settings({name: suggest(trial, name, d) for name, d in space.distributions.items()})
        if spec.grid:
            runs = [(seed, run_folder(spec, trial.number, f"-s{seed}")) for seed in spec.confirm_seeds]
        else:
            runs = [(spec.seed, run_folder(spec, trial.number))]
        trial.set_user_attr("runs", [str(path) for _, path in runs])
        scores, tested = [], []
        for seed, path in runs:
            value, test = train_trial_run(spec, trial.number, values, seed, path, "grid" if spec.grid else "search",
                                          None if spec.grid else trial, test=bool(spec.grid))
            scores.append(value)
            tested.append(test)
            trial.set_user_attr("values", scores)
            if spec.grid:
                trial.set_user_attr("test_values", tested)
        return float(sum(scores) / len(scores))
    return run


# --------------------------------------------------------------------------- workers


def run_worker(spec: StudySpec, threads: int | None, index: int = 0) -> None:
    """Worker ``index``: join the study and run trials until it has ``spec.trials`` finished ones.

    Its sampler is seeded with ``--seed + index``: workers seeded alike would propose the same
    settings at the same time."""
    set_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # hcm reports a failed trial itself
    storage = open_storage(spec.storage, spec.heartbeat)
    study = load_study(spec.study, storage, spec.identity(), make_sampler(spec.grid, spec.seed + index),
                       make_pruner("none" if spec.grid else spec.pruner))
    func = objective(spec, spec.search_space())
    failures: list[FrozenTrial] = []

    def one_trial() -> None:
        study.optimize(func, n_trials=1, catch=(InvalidTrialSettings,), callbacks=[lambda _, t: failures.append(t)])
        if failures and failures[-1].state != TrialState.FAIL:
            failures.clear()
        if len(failures) >= MAX_FAILED_IN_A_ROW:
            raise UsageError(f"{len(failures)} trials in a row had settings the model refuses (the last: trial "
                             f"{failures[-1].number}, {failures[-1].params}); narrow the search space")

    work_until(study, spec.trials, one_trial, spec.heartbeat)


def worker_process(spec: dict[str, Any], threads: int, index: int) -> None:
    """Entry point of a spawned worker process; its exit status tells the parent how it ended."""
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d: %(message)s")
    status = report_errors(lambda: run_worker(StudySpec(**spec), threads, index))
    sys.exit(status)


def run_workers(spec: StudySpec, workers: int, threads: int | None) -> None:
    """K workers share the CPUs (``threads`` each, default usable CPUs / K); one runs in-process."""
    per_worker = threads or max(1, usable_cpus() // workers)
    if workers == 1:
        run_worker(spec, per_worker)
        return
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=worker_process, args=(asdict(spec), per_worker, i), name=f"hcm-tune-{i}")
             for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:  # they received Ctrl-C too: each ends its step and saves a checkpoint
            proc.join()
        raise
    codes = [proc.exitcode for proc in procs]
    if any(code in (130, 143) for code in codes):
        raise KeyboardInterrupt
    for proc, code in zip(procs, codes):
        if code is not None and code < 0:  # killed by a signal: its trial is failed by the heartbeat check
            log.warning("worker %s was killed (signal %d); its trial is marked failed and the other workers went on",
                        proc.name, -code)
    failed = [(proc.name, code) for proc, code in zip(procs, codes) if code and code > 0]
    if failed:
        raise HcmError(f"worker(s) {failed} stopped with an error (their messages are above); the study keeps "
                       f"its finished trials: run the same command again to continue")


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
    if grid and request.space is not None:
        raise UsageError("--grid and --space are two kinds of study; give one of them")
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
