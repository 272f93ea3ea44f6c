"""The study of ``hcm tune``: what a worker needs to join it (:class:`StudySpec`), one trial's
ordinary runs (pruned on their per-epoch validation metric, resumed after a stop), the objective
and the worker processes that share the CPUs. The command, its checks, the confirmation over
seeds and the reports: ``hcm.apps.tune``."""

from __future__ import annotations

import logging
import math
import multiprocessing
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from hcm.apps.train import resolve_settings
from hcm.core.errors import HcmError, UsageError, report_errors
from hcm.core.files import json_safe, read_json, write_json
from hcm.core.threads import set_threads, usable_cpus
from hcm.model.config import ModelConfig
from hcm.training.evaluate import evaluate_run
from hcm.training.results import TUNING_RECORD as TRIAL_FILE
from hcm.training.runs import start_or_resume
from hcm.training.search_space import SearchSpace, parse_space
from hcm.training.settings import TrainConfig
from hcm.training.trainer import train
from hcm.training.tuning import (
    SurplusTrial,
    claim_budget,
    load_study,
    make_pruner,
    make_sampler,
    open_storage,
    shown_url,
    work_until,
)

log = logging.getLogger(__name__)
MAX_FAILED_IN_A_ROW = 5  # a worker whose trials keep failing on invalid settings stops


class InvalidTrialSettings(HcmError, ValueError):
    """A sampled combination the model refuses (e.g. d_model not divisible by num_heads): the
    trial is marked failed with this message and the search goes on."""


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
        claim_budget(trial, spec.trials)  # before any setting is drawn or run folder made
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

    def keep_unless_surplus(_, trial: FrozenTrial) -> None:
        if not trial.user_attrs.get("surplus"):  # a trial that gave way says nothing about its settings
            failures.append(trial)

    def one_trial() -> None:
        study.optimize(func, n_trials=1, catch=(InvalidTrialSettings, SurplusTrial),
                       callbacks=[keep_unless_surplus])
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
