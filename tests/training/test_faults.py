"""training/faults.py on its own: stop signals as requests, the error a stop ends with, and the
settings a resume compares (the training runs that use them: tests/training/test_trainer_faults.py).

Signals are sent with ``signal.raise_signal``: to this thread, its Python handler run before the
call returns (``os.kill`` may reach another thread first, the handler a moment later)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from hcm.core.errors import Interrupted
from hcm.training import TrainingError
from hcm.training.faults import (
    MAX_LISTED,
    NonFiniteLossError,
    StopSignals,
    TrainingInterrupted,
    config_differences,
    ignore_stop_signals,
    interrupted,
    resume_command,
)


def send(signum: int) -> None:
    """``signum`` to this thread; a KeyboardInterrupt here fails the test (instead of stopping pytest)."""
    try:
        signal.raise_signal(signum)
    except KeyboardInterrupt:
        pytest.fail(f"{signal.Signals(signum).name} raised KeyboardInterrupt where it should only ask to stop")


@pytest.fixture
def own_stop_handlers():
    """Handlers of SIGINT/SIGTERM that record what reached them, put back after the test."""
    reached: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: reached.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    yield reached
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_stop_signals_record_the_first_signal_and_put_the_handlers_back(own_stop_handlers) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as stop:
        assert stop.signum == 0
        send(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        send(signal.SIGTERM)  # a second SIGTERM changes nothing and raises nothing
        assert stop.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before
    assert own_stop_handlers == []  # the earlier handlers saw nothing while training held the signals
    send(signal.SIGTERM)
    assert own_stop_handlers == [signal.SIGTERM]


def test_a_second_ctrl_c_stops_at_once(own_stop_handlers, caplog: pytest.LogCaptureFixture) -> None:
    with StopSignals() as stop:
        send(signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert [r.getMessage() for r in caplog.records] == [
        "SIGINT received: training stops after the current step and writes a checkpoint (Ctrl-C again stops at once)"]


def test_ctrl_c_after_sigterm_stops_at_once_and_sigterm_after_ctrl_c_does_not(own_stop_handlers) -> None:
    with StopSignals() as stop:
        send(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert stop.signum == signal.SIGTERM
    with StopSignals() as stop:
        send(signal.SIGINT)
        send(signal.SIGTERM)
        assert stop.signum == signal.SIGINT


def test_stop_signals_leave_the_handlers_alone_outside_the_main_thread(own_stop_handlers) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    seen = {}

    def worker(stop: StopSignals) -> None:
        with stop:
            seen["inside"] = {s: signal.getsignal(s) for s in before}
            seen["signum"] = stop.signum
        seen["left"] = True

    used = StopSignals()
    with used:  # used in the main thread first, then again in a worker
        pass
    for stop in (StopSignals(), used):
        seen.clear()
        thread = threading.Thread(target=worker, args=(stop,))
        thread.start()
        thread.join()
        assert seen == {"inside": before, "signum": 0, "left": True}
        assert {s: signal.getsignal(s) for s in before} == before


def test_loader_workers_ignore_both_stop_signals(own_stop_handlers) -> None:
    hangup = signal.getsignal(signal.SIGHUP)  # SIG_IGN under nohup: compared, not assumed
    ignore_stop_signals(3)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) is hangup


def test_resume_command_names_the_absolute_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resume_command(Path("runs/a")) == f"hcm train --resume --run {tmp_path}/runs/a"
    assert resume_command(Path("runs/a"), " --skip-nonfinite 2") == (
        f"hcm train --resume --run {tmp_path}/runs/a --skip-nonfinite 2")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_interruption_says_where_and_how_to_continue(tmp_path: Path, signum: int, code: int) -> None:
    error = interrupted(signum, "epoch 2, step 5", tmp_path / "last.pt", tmp_path, world=1)
    assert isinstance(error, TrainingInterrupted) and isinstance(error, Interrupted)
    assert error.exit_code == code
    name = signal.Signals(signum).name
    assert str(error) == (f"training stopped by {name} at epoch 2, step 5; {tmp_path}/last.pt holds everything "
                          f"needed to continue. Continue with:\n  hcm train --resume --run {tmp_path}")


def test_under_torchrun_the_interruption_asks_for_the_same_launcher(tmp_path: Path) -> None:
    error = interrupted(signal.SIGTERM, "the end of epoch 1", tmp_path / "last.pt", tmp_path, world=2)
    assert ("Continue with (under torchrun: the same torchrun line with these hcm options):\n"
            f"  hcm train --resume --run {tmp_path}") in str(error)


def test_a_non_finite_loss_is_a_training_error() -> None:
    assert issubclass(NonFiniteLossError, TrainingError)


def test_config_differences_are_empty_for_equal_configs() -> None:
    config = {"train": {"lr": 0.1}, "model": {"d_model": 8}, "dataset": "mosei"}
    assert config_differences(config, dict(config)) == []


def test_config_differences_ignore_what_a_resume_may_change() -> None:
    saved = {"created": "t0", "torch": "2.1", "world_size": 1, "cache": "/a", "provenance": {"git": {"commit": "x"}},
             "extended": [], "train": {"skip_nonfinite": 0, "epochs": 3, "lr": 0.1}}
    now = {"created": "t1", "torch": "2.2", "world_size": 2, "cache": "/b", "provenance": {"git": {"commit": "y"}},
           "extended": [{"epochs": 5}], "train": {"skip_nonfinite": 2, "epochs": 5, "lr": 0.1}}
    assert config_differences(saved, now) == []


def test_config_differences_name_keys_added_and_removed() -> None:
    saved = {"train": {"lr": 0.1}, "model": {"reading": "paper"}}
    now = {"train": {"lr": 0.1, "amp": "off"}, "model": {}}
    assert config_differences(saved, now) == ["model.reading: 'paper' in the checkpoint, <absent> now",
                                              "train.amp: <absent> in the checkpoint, 'off' now"]


def test_a_key_with_the_value_none_differs_from_a_missing_key() -> None:
    assert config_differences({"a": None, "b": "<absent>"}, {"c": None}) == [
        "a: None in the checkpoint, <absent> now", "b: '<absent>' in the checkpoint, <absent> now",
        "c: <absent> in the checkpoint, None now"]


def test_config_differences_compare_three_levels_then_whole_values() -> None:
    saved = {"data": {"streams": {"text": ["roberta"], "video": {"deep": 1}}}}
    now = {"data": {"streams": {"text": ["roberta"], "video": {"deep": 2}}}}
    assert config_differences(saved, now) == [
        "data.streams.video: {'deep': 1} in the checkpoint, {'deep': 2} now"]


def test_config_differences_cut_long_values_and_list_at_most_eight() -> None:
    saved = {"model": {f"k{i}": i for i in range(MAX_LISTED + 3)}, "long": "x" * 60}
    now = {"model": {f"k{i}": -i - 1 for i in range(MAX_LISTED + 3)}, "long": "y" * 60}
    lines = config_differences(saved, now)
    assert MAX_LISTED == 8 and len(lines) == MAX_LISTED + 1
    short = "'" + "x" * 44 + "..."  # repr cut to 48 characters
    assert lines[0] == f"long: {short} in the checkpoint, {short.replace('x', 'y')} now"
    assert lines[1] == "model.k0: 0 in the checkpoint, -1 now"
    assert lines[-1] == "and 4 more"  # 12 differences: 8 listed and 4 more


def test_exactly_eight_differences_are_all_listed() -> None:
    lines = config_differences({f"k{i}": i for i in range(MAX_LISTED)}, {f"k{i}": -1 for i in range(MAX_LISTED)})
    assert len(lines) == MAX_LISTED and not any(line.startswith("and ") for line in lines)


def test_config_differences_keep_a_value_of_exactly_48_characters() -> None:
    value = "z" * 46  # its repr: 48 characters
    assert config_differences({"v": value}, {"v": 1}) == [f"v: {value!r} in the checkpoint, 1 now"]
