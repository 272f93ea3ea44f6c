"""Optuna studies of ``hcm tune``: storage, sampler, pruner, the study's identity and its trials.

Storage: an embedded SQLite file in the workspace (``<workspace>/tune/studies.db``) unless a
database URL is given (``postgresql://user@host/db``, ``mysql://...``): every process that opens
the same URL and study name works on one study, on one machine or many. Each running trial
sends a heartbeat; a trial whose process died (``kill -9``, a lost node) is marked failed once
its heartbeat is ``2 x heartbeat`` seconds old, by whichever worker looks next, and the study
goes on.

A study remembers what it searches (cache, space, grid, settings) in its user attributes, and
refuses to be continued with other ones: a different search is a different study (``--study``).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hcm.core.errors import UsageError

log = logging.getLogger(__name__)
DEFAULT_DB = "studies.db"
PRUNERS = ("median", "hyperband", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: User attributes that make a study what it is; continuing it with other values is refused.
IDENTITY = ("cache", "dataset", "space", "grid", "settings", "direction")


def default_storage(tune_root: Path) -> str:
    """The embedded SQLite file of a workspace (its folder is created)."""
    tune_root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{tune_root / DEFAULT_DB}"


def shown_url(url: str) -> str:
    """The storage URL without its password (for messages and run folders)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy reads; say it as given
        return url


def open_storage(url: str, heartbeat: int | None) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats (``heartbeat`` seconds; None: none, for reading only)."""
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 300}}  # writers queue on SQLite's lock instead of failing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                                              grace_period=None if heartbeat is None else 2 * heartbeat)
        except ImportError as error:
            raise UsageError(f"the database driver for {shown_url(url)} is not installed ({error}); for PostgreSQL "
                             f"install psycopg (hcm's postgres extra; make install installs it)") from error
        except Exception as error:  # sqlalchemy's errors: a wrong host, password or database name
            raise UsageError(f"cannot open the study storage {shown_url(url)}: {error}") from error


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (stop a trial below the median of earlier ones at the same epoch, after 2
    complete trials and its first epoch), ``hyperband`` or ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


def make_sampler(grid: dict[str, list[Any]] | None, seed: int | None) -> optuna.samplers.BaseSampler:
    """Optuna's grid sampler for a grid, else TPE."""
    if grid:
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def load_study(name: str, storage: optuna.storages.RDBStorage, identity: dict[str, Any],
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create the study or continue it; a study started with another identity is refused."""
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, sampler=sampler,
                                pruner=pruner, direction=identity["direction"])
    known = study.user_attrs
    if not known:
        for key in IDENTITY:
            study.set_user_attr(key, identity[key])
        return study
    changed = [key for key in IDENTITY if known.get(key) != identity[key]]
    if changed:
        details = "; ".join(f"{key}: study {json.dumps(known.get(key))} now {json.dumps(identity[key])}"
                            for key in changed)
        raise UsageError(f"study {name!r} was started with other settings ({details}). Continue it with the "
                         f"options it was started with, or start another with --study NAME")
    return study


def existing_study(name: str | None, storage: optuna.storages.RDBStorage, url: str) -> optuna.Study:
    """A study that exists (``--status``): by name, or the storage's only one."""
    names = optuna.get_all_study_names(storage)
    if name is None:
        if len(names) != 1:
            listing = ", ".join(names) or "none"
            raise UsageError(f"{shown_url(url)} holds {len(names)} studies ({listing}); choose one with --study NAME")
        name = names[0]
    if name not in names:
        raise UsageError(f"no study {name!r} in {shown_url(url)}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def counts(study: optuna.Study) -> dict[TrialState, int]:
    trials = study.get_trials(deepcopy=False)
    return {state: sum(t.state == state for t in trials) for state in TrialState}


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class SurplusTrial(Exception):
    """A trial begun when the study's budget was already taken by trials begun before it."""


def claim_budget(trial: optuna.Trial, n_trials: int) -> None:
    """Raise :class:`SurplusTrial` unless ``trial`` is one of the study's first ``n_trials`` trials
    that did not fail, counted in the storage's trial numbers.

    Two workers that both see room for one more trial start one each; the storage numbers the
    trials one after the other, so the later one gives way here (it is marked failed, with the user
    attribute ``surplus``, before it trains) and the study ends with ``n_trials`` finished trials.
    """
    begun = [t for t in trial.study.get_trials(deepcopy=False)
             if t.number < trial.number and t.state != TrialState.FAIL]
    if len(begun) >= n_trials:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"trial {trial.number} gives way: {len(begun)} trials begun before it fill the "
                           f"budget of {n_trials}")


def work_until(study: optuna.Study, n_trials: int, run_one: Callable[[], None], heartbeat: int,
               stop: Callable[[], bool] = lambda: False) -> None:
    """Run trials until ``n_trials`` are complete or pruned (with other workers on the same study).

    While the last trials run elsewhere (or a dead worker's trial waits for its heartbeat to
    expire) this waits instead of starting more, so the study ends with ``n_trials`` finished
    trials however many workers share it.
    """
    waited = False
    while not stop():
        fail_stale(study)
        count = counts(study)
        finished = count[TrialState.COMPLETE] + count[TrialState.PRUNED]
        if finished >= n_trials:
            return
        if finished + count[TrialState.RUNNING] + count[TrialState.WAITING] >= n_trials \
                and not count[TrialState.WAITING]:
            if not waited:
                log.info("%d trial(s) still running; waiting for them (a dead worker's trial is failed after "
                         "%d s without heartbeat)", count[TrialState.RUNNING], 2 * heartbeat)
                waited = True
            time.sleep(1)
            continue
        run_one()


def requeue_failed_points(study: optuna.Study, grid: dict[str, list[Any]]) -> int:
    """Grid points whose trials all failed (a killed worker, Ctrl-C) are queued again; the grid
    sampler alone would count them as visited. Returns how many."""
    trials = study.get_trials(deepcopy=False)

    def key(params: dict[str, Any]) -> str:
        return json.dumps({name: params.get(name) for name in sorted(grid)}, sort_keys=True)

    alive = {key(t.params) for t in trials if t.state in (*FINISHED, TrialState.RUNNING)}
    alive |= {key(t.system_attrs.get("fixed_params", {})) for t in trials if t.state == TrialState.WAITING}
    failed = {key(t.params): t.params for t in trials if t.state == TrialState.FAIL and t.params}
    queued = 0
    for point, params in failed.items():
        if point not in alive:
            study.enqueue_trial({name: params[name] for name in grid}, skip_if_exists=False)
            queued += 1
    return queued


def best_first(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` complete trials, best value first."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: t.value, reverse=reverse)[:top]


def trial_seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()
