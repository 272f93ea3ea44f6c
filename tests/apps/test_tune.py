"""`hcm tune` on a tiny synthetic cache: a search with its confirmation and config file, a grid
sweep, two worker processes on one SQLite study, kill -9 and Ctrl-C of a worker, and a real
PostgreSQL server (tests/apps/postgres.py starts one, or the test says why it cannot)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()
SMALL = ["--set", "m_gcn=1", "--set", "m_c=1", "--set", "ot_iters=5", "--set", "batch_size=16"]
SPACE = {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "d_model": [8, 16]}


@pytest.fixture
def tune_setup(workdir: Path, tiny_cache, tmp_path: Path) -> tuple[Path, Path]:
    """A workspace with a tiny cache, and a small search space file."""
    tiny_cache(workdir / "features" / "sample" / "tiny")
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return workdir, space


def study_of(workdir: Path, name: str = "sample-tiny", url: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url or f"sqlite:///{workdir / 'tune' / 'studies.db'}")


def trial_runs(workdir: Path) -> dict[str, dict]:
    """Run folder name -> its tune.json, for every run of hcm tune in the workspace."""
    return {p.parent.name: json.loads(p.read_text()) for p in (workdir / "runs" / "sample").glob("*/tune.json")}


def check_no_trial_lost_or_run_twice(workdir: Path, study: optuna.Study, finished: int) -> None:
    trials = study.get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == finished
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    search = {name: record for name, record in trial_runs(workdir).items() if record["role"] == "search"}
    assert sorted(record["trial"] for record in search.values()) == sorted({r["trial"] for r in search.values()})
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            (run,) = trial.user_attrs["runs"]
            assert search[Path(run).name]["trial"] == trial.number
            assert search[Path(run).name]["value"] == pytest.approx(trial.value)


@pytest.mark.slow
def test_search_confirm_and_train_the_best(tune_setup) -> None:
    workdir, space = tune_setup
    args = ["tune", "--space", str(space), "--trials", "3", "--epochs", "2", "--confirm-seeds", "1,2", "--top", "2",
            "--heartbeat", "2", "--quiet", *SMALL]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    study = study_of(workdir)
    check_no_trial_lost_or_run_twice(workdir, study, 3)
    folder = workdir / "tune" / "sample-tiny"
    assert (folder / "history.png").is_file() and (folder / "importance.png").is_file()

    confirm = json.loads((folder / "confirm.json").read_text())
    means = [r["mean"] for r in confirm["ranked"]]
    assert len(means) == 2 and means == sorted(means)  # valid MAE: lower first
    runs = trial_runs(workdir)
    for ranked in confirm["ranked"]:
        seeds = [runs[f"tune-sample-tiny-t{ranked['trial']:04d}-confirm-s{s}"] for s in (1, 2)]
        assert [r["value"] for r in seeds] == pytest.approx(ranked["values"])
        assert all(r["role"] == "confirm" and r["params"] == ranked["params"] for r in seeds)

    config = json.loads((folder / "best-config.json").read_text())
    best = confirm["ranked"][0]["params"]
    assert config["model"]["d_model"] == best["d_model"] and config["train"]["lr"] == pytest.approx(best["lr"])
    assert "device" not in config["train"] and config["tuned"]["trial"] == confirm["ranked"][0]["trial"]
    trained = runner.invoke(app, ["train", "--config", str(folder / "best-config.json"), "--epochs", "1", "--quiet"])
    assert trained.exit_code == 0, trained.output
    (new,) = [p for p in (workdir / "runs" / "sample").iterdir() if p.name.endswith("-full")]
    run_config = json.loads((new / "config.json").read_text())
    assert run_config["model"]["d_model"] == best["d_model"] and run_config["train"]["epochs"] == 1

    status = runner.invoke(app, ["tune", "--status"])
    assert status.exit_code == 0, status.output
    assert "3 complete" in status.output or "pruned" in status.output
    table = [line for line in status.output.splitlines() if line.startswith("|")]
    assert len(table) >= 5 and all(len(line) <= 80 for line in table)

    listed = runner.invoke(app, ["runs", "--json"])
    rows = json.loads(listed.stdout)
    assert {(r["study"], r["trial"]) for r in rows if r.get("tune_role") == "search"} == \
        {("sample-tiny", n) for n in range(3)}

    # Again: nothing new is trained (the study has its trials, the confirmation its runs).
    stamps = {p: p.stat().st_mtime_ns for p in (workdir / "runs" / "sample").glob("tune-*/checkpoints/best.pt")}
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(study_of(workdir).get_trials()) == 3
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    changed = runner.invoke(app, [*args[:5], "--epochs", "3", *args[7:]])
    assert changed.exit_code == 2 and "started with other settings" in changed.output


@pytest.mark.slow
def test_grid_sweep_draws_metric_against_value(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    result = runner.invoke(app, ["tune", "--grid", "m_gcn=1,2", "--confirm-seeds", "1,2", "--epochs", "1", "--quiet",
                                 "--set", "m_c=1", "--set", "ot_iters=5", "--set", "d_model=8"])
    assert result.exit_code == 0, result.output
    folder = workdir / "tune" / "sample-tiny-grid-m_gcn"
    report = json.loads((folder / "grid.json").read_text())
    assert [p["params"]["m_gcn"] for p in report["points"]] == [1, 2]
    runs = trial_runs(workdir)
    for point in report["points"]:
        records = [runs[f"tune-sample-tiny-grid-m_gcn-t{point['trial']:04d}-s{s}"] for s in (1, 2)]
        assert [r["value"] for r in records] == pytest.approx(point["values"])
        assert point["mean"] == pytest.approx(sum(point["values"]) / 2)
        tested = [json.loads((workdir / "runs" / "sample" / f"tune-sample-tiny-grid-m_gcn-t{point['trial']:04d}-s{s}"
                              / "eval" / "test" / "metrics.json").read_text())["metrics"]["mae"] for s in (1, 2)]
        assert [r["test"] for r in records] == pytest.approx(tested) == point["test_values"]
        config = json.loads((workdir / "runs" / "sample" / f"tune-sample-tiny-grid-m_gcn-t{point['trial']:04d}-s1"
                             / "config.json").read_text())
        assert config["model"]["m_gcn"] == point["params"]["m_gcn"]
    assert (folder / "sensitivity.png").is_file()
    assert "| m_gcn | n | valid mean ± std | test mean ± std |" in (folder / "grid.md").read_text()


def test_bad_names_are_refused_before_any_work(tune_setup, tmp_path: Path) -> None:
    workdir, space = tune_setup
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"droput": [0.1, 0.2]}))
    result = runner.invoke(app, ["tune", "--space", str(bad)])
    assert result.exit_code == 2 and "unknown setting 'droput'" in result.output
    result = runner.invoke(app, ["tune", "--space", str(space), "--grid", "m_gcn=1,2"])
    assert result.exit_code == 2 and "give one of them" in result.output
    result = runner.invoke(app, ["tune", "--status"])
    assert result.exit_code == 2 and "holds 0 studies" in result.output
    assert not (workdir / "runs").exists()


# --------------------------------------------------------------------------- processes


def hcm(workdir: Path, *args: str) -> subprocess.Popen:
    """``python -m hcm`` in a process of its own (a new session: signals reach it alone)."""
    env = {**os.environ, "HCM_HOME": str(workdir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hcm", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen, timeout: float = 180) -> Path:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"hcm ended ({proc.returncode}) before {pattern} appeared:\n{proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{pattern} did not appear in {timeout} s")


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output
    return output


@pytest.mark.slow
def test_two_worker_processes_share_one_sqlite_study(tune_setup) -> None:
    workdir, space = tune_setup
    output = finish(hcm(workdir, "tune", "--space", str(space), "--trials", "4", "--workers", "2", "--epochs", "1",
                        "--pruner", "none", "--top", "1", "--confirm-seeds", "1", "--quiet", *SMALL))
    assert "2 worker(s)" in output
    check_no_trial_lost_or_run_twice(workdir, study_of(workdir), 4)
    trials = study_of(workdir).get_trials()
    assert len(trials) == 4
    assert len({t.params["lr"] for t in trials}) == 4  # the workers' samplers are seeded apart


@pytest.mark.slow
def test_a_killed_worker_leaves_its_trial_failed_and_the_study_goes_on(tune_setup) -> None:
    workdir, space = tune_setup
    args = ["tune", "--space", str(space), "--trials", "2", "--epochs", "6", "--pruner", "none", "--top", "1",
            "--confirm-seeds", "1", "--heartbeat", "1", "--threads", "1", "--quiet", *SMALL]
    proc = hcm(workdir, *args)
    wait_for((workdir / "runs" / "sample", "tune-sample-tiny-t0000/metrics.csv"), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert study_of(workdir).trials[0].state == TrialState.RUNNING  # nobody could mark it

    finish(hcm(workdir, *args))
    study = study_of(workdir)
    assert study.trials[0].state == TrialState.FAIL
    check_no_trial_lost_or_run_twice(workdir, study, 2)
    assert [t.number for t in study.trials if t.state == TrialState.COMPLETE] == [1, 2]


def worker_pids(parent: int) -> list[int]:
    """The spawned worker processes of ``parent`` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker processes through /proc (Linux)")
def test_the_other_worker_finishes_the_study_when_one_is_killed(tune_setup) -> None:
    workdir, space = tune_setup
    proc = hcm(workdir, "tune", "--space", str(space), "--trials", "3", "--workers", "2", "--epochs", "4",
               "--pruner", "none", "--top", "1", "--confirm-seeds", "1", "--heartbeat", "1", "--quiet", *SMALL)
    wait_for((workdir / "runs" / "sample", "tune-sample-tiny-t000?/metrics.csv"), proc)
    pids = worker_pids(proc.pid)
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)
    output = finish(proc)
    assert "was killed (signal 9)" in output
    study = study_of(workdir)
    check_no_trial_lost_or_run_twice(workdir, study, 3)
    assert [t.state for t in study.trials].count(TrialState.FAIL) <= 1


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_the_resume_command(tune_setup) -> None:
    workdir, space = tune_setup
    proc = hcm(workdir, "tune", "--space", str(space), "--trials", "2", "--epochs", "50", "--pruner", "none",
               "--heartbeat", "1", "--threads", "1", "--quiet", *SMALL)
    wait_for((workdir / "runs" / "sample", "tune-sample-tiny-t0000/metrics.csv"), proc)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Continue with: hcm tune --space" in output and "Traceback" not in output
    assert study_of(workdir).trials[0].state == TrialState.FAIL


@pytest.mark.slow
def test_a_real_postgresql_server(tune_setup, postgres_url: str) -> None:
    workdir, space = tune_setup
    args = ["tune", "--storage", postgres_url, "--space", str(space), "--trials", "2", "--epochs", "1", "--pruner",
            "none", "--top", "1", "--confirm-seeds", "1", "--quiet", *SMALL]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    study = study_of(workdir, url=postgres_url)
    check_no_trial_lost_or_run_twice(workdir, study, 2)
    assert not (workdir / "tune" / "studies.db").exists()
    status = runner.invoke(app, ["tune", "--status", "--storage", postgres_url])
    assert status.exit_code == 0 and "2 complete" in status.output and "postgresql://" in status.output


def test_settings_the_model_refuses_fail_their_trial_and_then_the_search(tune_setup, tmp_path: Path) -> None:
    workdir, _ = tune_setup
    space = tmp_path / "heads.json"
    space.write_text(json.dumps({"d_model": [6], "num_heads": [4]}))  # 6 is not divisible by 4
    result = runner.invoke(app, ["tune", "--space", str(space), "--trials", "2", "--epochs", "1", "--quiet"])
    assert result.exit_code == 2 and "5 trials in a row" in result.output and "narrow the search space" in result.output
    study = study_of(workdir)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5


def test_a_confirm_run_stopped_before_its_first_checkpoint_starts_again(tmp_path: Path, monkeypatch) -> None:
    """The confirmation run's folder is the same on every rerun of hcm tune: one killed before its
    first checkpoint (config.json and tune.json, no last.pt) is trained afresh, not refused."""
    from types import SimpleNamespace

    import hcm.apps.tune_study as tune_app
    from hcm.training.runs import RunPaths, check_run_folder, start_or_resume

    spec = tune_app.StudySpec("s", "sqlite://", str(tmp_path / "cache"), str(tmp_path / "runs"), "sample", "tiny",
                              {}, "", {}, {}, "auto", 1, "none", 0, [1], 60, "minimize", "mae", "sample/tiny/x")
    run = tune_app.run_folder(spec, 0, "-confirm-s1")
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "tune.json").write_text(json.dumps({"study": "s", "trial": 0, "role": "confirm"}))
    trained = []

    def fake_train(cache, folder, cfg, model_cfg, resume, callbacks, progress):
        check_run_folder(RunPaths(folder), resume)  # what train() checks first
        trained.append(resume)
        return SimpleNamespace(best_value=0.5, best_epoch=1)

    monkeypatch.setattr(tune_app, "train", fake_train)
    assert tune_app.train_trial_run(spec, 0, {}, 1, run, "confirm") == (0.5, None)
    assert trained == [False] and not (run / "config.json").exists()
    assert json.loads((run / "tune.json").read_text())["value"] == 0.5

    # A run with a checkpoint is resumed, its folder kept.
    RunPaths(run).checkpoints.mkdir()
    RunPaths(run).last.write_bytes(b"")
    assert start_or_resume(run) and RunPaths(run).last.is_file()
