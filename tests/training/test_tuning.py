"""Optuna studies of hcm tune without training: identity, stale trials, finished-trial counts,
the budget shared by workers, grid points queued again, storage errors."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hcm.core.errors import UsageError
from hcm.training.tuning import (
    SurplusTrial,
    best_first,
    claim_budget,
    default_storage,
    load_study,
    make_pruner,
    make_sampler,
    open_storage,
    requeue_failed_points,
    shown_url,
    work_until,
)

IDENTITY = {"cache": "c", "dataset": "sample", "space": {"x": [1, 2]}, "grid": {}, "settings": {},
            "direction": "minimize"}


def new_study(tmp_path: Path, identity: dict = IDENTITY, heartbeat: int | None = 1, grid: dict | None = None):
    storage = open_storage(default_storage(tmp_path / "tune"), heartbeat)
    return load_study("s", storage, identity, make_sampler(grid, 0), make_pruner("none"))


def test_a_study_refuses_other_settings(tmp_path: Path) -> None:
    new_study(tmp_path)
    assert new_study(tmp_path).user_attrs["dataset"] == "sample"  # the same settings continue it
    with pytest.raises(UsageError, match=r"study 's' was started with other settings \(space: .*--study NAME"):
        new_study(tmp_path, {**IDENTITY, "space": {"x": [1, 3]}})


def test_work_until_fails_a_dead_workers_trial_and_finishes(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    with pytest.warns(UserWarning, match="Heartbeat"):
        dead = study.ask()  # a trial whose worker died: RUNNING, its heartbeat never sent again
    study._storage.record_heartbeat(dead._trial_id)
    started = time.monotonic()
    work_until(study, 2, lambda: study.optimize(lambda t: t.suggest_int("x", 1, 2), n_trials=1), heartbeat=1)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert time.monotonic() - started < 30
    work_until(study, 2, lambda: pytest.fail("the study has its trials"), heartbeat=1)


def test_failed_grid_points_are_queued_again(tmp_path: Path) -> None:
    grid = {"m_gcn": [1, 2, 4]}
    study = new_study(tmp_path, {**IDENTITY, "grid": grid}, grid=grid)

    killed: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        value = trial.suggest_categorical("m_gcn", grid["m_gcn"])
        if value == 2 and not killed:
            killed.append(trial.number)
            raise RuntimeError("killed")
        return float(value)

    study.optimize(objective, n_trials=3, catch=(RuntimeError,))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert requeue_failed_points(study, grid) == 1
    assert requeue_failed_points(study, grid) == 0  # already waiting
    study.optimize(objective, n_trials=1)
    done = sorted(t.params["m_gcn"] for t in study.trials if t.state == TrialState.COMPLETE)
    assert done == [1, 2, 4] and [t.value for t in best_first(study, 2)] == [1.0, 2.0]


def test_storage_errors_are_messages(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot open the study storage|driver"):
        open_storage("nosuchdb://host/db", None)
    assert shown_url("postgresql://me:secret@host/db") == "postgresql://me:***@host/db"


def test_a_trial_begun_when_the_budget_was_taken_gives_way(tmp_path: Path) -> None:
    study = new_study(tmp_path, heartbeat=None)
    study.optimize(lambda t: float(t.suggest_int("x", 1, 2)), n_trials=1)
    first, second = study.ask(), study.ask()  # two workers saw room for one more trial at the same moment
    claim_budget(first, 2)
    with pytest.raises(SurplusTrial, match="trial 2 gives way: 2 trials begun before it fill the budget of 2"):
        claim_budget(second, 2)
    assert study.trials[2].user_attrs == {"surplus": True} and study.trials[1].user_attrs == {}
    study.tell(second, state=TrialState.FAIL)  # as optimize(catch=...) marks it
    study.tell(first, state=TrialState.FAIL)  # a failed trial leaves its room to the next one
    claim_budget(study.ask(), 2)


def test_racing_workers_end_with_the_budget_of_finished_trials(tmp_path: Path) -> None:
    """Worker B starts a trial while worker A's last trial runs; B's gives way and A's finishes."""
    worker_a, worker_b = new_study(tmp_path, heartbeat=None), new_study(tmp_path, heartbeat=None)

    def objective(other: optuna.Study | None):
        def run(trial: optuna.Trial) -> float:
            claim_budget(trial, 2)
            if other is not None and trial.number == 1:
                other.optimize(objective(None), n_trials=1, catch=(SurplusTrial,))
            return float(trial.suggest_int("x", 1, 2))
        return run

    work_until(worker_a, 2, lambda: worker_a.optimize(objective(worker_b), n_trials=1, catch=(SurplusTrial,)),
               heartbeat=1)
    states = [t.state for t in worker_a.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert worker_a.get_trials()[2].user_attrs == {"surplus": True} and not worker_a.get_trials()[2].params
