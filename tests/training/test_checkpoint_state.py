"""hcm.training.checkpoints without a trainer: what ``last.pt`` and ``best.pt`` hold, how a loop is
put back from them (this rank's RNG and loss sums), how values become plain data, and the words
of each refusal (the trainer's own resume runs are in test_trainer_faults.py)."""

from __future__ import annotations

import errno
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hcm.training import TrainingError
from hcm.training import checkpoints as C
from hcm.training.checkpoints import CheckpointReadError, CheckpointWriteError, Loop
from hcm.training.distributed import Dist
from hcm.training.runs import RunPaths


def make_loop(seed: int = 0, scale: float = 2.0**16) -> Loop:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return Loop(model, optimizer, scheduler, torch.amp.GradScaler("cpu", init_scale=scale), None)


def trained_loop() -> Loop:
    loop = make_loop(0, scale=1024.0)
    loss = loop.model(torch.ones(4, 3)).pow(2).sum()
    loss.backward()
    loop.optimizer.step()
    loop.scheduler.step()
    loop.epoch, loop.best_value, loop.best_epoch, loop.bad_epochs, loop.step = 3, 0.25, 2, 1, 5
    loop.best_valid, loop.history = {"valid_mae": 0.25}, [{"epoch": 1}, {"epoch": 2}]
    loop.partial, loop.skipped = {"task": 1.5, "items": 8.0}, [{"batch": 1}]
    return loop


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


# ---------------------------------------------------------------------- what the files hold

def test_last_holds_everything_a_resume_needs_and_best_only_what_evaluation_needs(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    loop = trained_loop()
    C.save_last(loop, C.rng_state(), Dist(), paths, {"config": {"seed": 1}}, best=True)
    last, best = C.load_checkpoint(paths.last), C.load_checkpoint(paths.best)
    assert set(last) == {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "partial", "skipped",
                         "best_value", "best_epoch", "best_valid", "bad_epochs", "history", "rng", "config"}
    assert set(best) == {"model", "epoch", "best_value", "best_epoch", "best_valid", "config"}
    counters = (last["epoch"], last["step"], last["best_value"], last["best_epoch"], last["bad_epochs"])
    assert counters == (3, 5, 0.25, 2, 1)
    assert last["partial"] == [{"task": 1.5, "items": 8.0}] and last["skipped"] == [{"batch": 1}]
    assert last["history"] == [{"epoch": 1}, {"epoch": 2}] and last["best_valid"] == {"valid_mae": 0.25}
    assert len(last["rng"]) == 1 and last["config"] == {"seed": 1}
    for key, value in loop.model.state_dict().items():
        assert torch.equal(last["model"][key], value) and torch.equal(best["model"][key], value)


def test_without_an_improvement_only_last_is_written(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    C.save_last(trained_loop(), C.rng_state(), Dist(), paths, {})
    assert paths.last.is_file() and not paths.best.exists()


def test_only_rank_0_writes(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    C.save_last(trained_loop(), C.rng_state(), Dist(rank=1, world=1), paths, {}, best=True)
    assert not paths.last.exists() and not paths.best.exists()


def test_evaluation_state_keeps_the_evaluation_keys_it_has() -> None:
    state = {"model": 1, "epoch": 2, "optimizer": 3, "rng": 4, "config": 5}
    assert C.evaluation_state(state) == {"model": 1, "epoch": 2, "config": 5}


# ---------------------------------------------------------------------- putting a loop back

def test_a_restored_loop_continues_as_the_saved_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = RunPaths(tmp_path)
    saved = trained_loop()
    C.seed_everything(5)
    C.save_last(saved, C.rng_state(), Dist(), paths, {"config": {"seed": 5}})
    expected = draws()
    loop = make_loop(1)
    C.seed_everything(99)
    with caplog.at_level(logging.INFO, logger="hcm.training.checkpoints"):
        C.resume_from(loop, paths, {"seed": 5}, Dist())
    assert f"resuming {paths.root} at epoch 4, step 5" in caplog.messages
    assert draws() == expected
    assert loop.scaler.get_scale() == 1024.0
    for key, value in saved.model.state_dict().items():
        assert torch.equal(loop.model.state_dict()[key], value)
    assert loop.optimizer.state_dict()["state"].keys() == saved.optimizer.state_dict()["state"].keys()
    assert loop.scheduler.state_dict()["last_epoch"] == 1 and loop.optimizer.param_groups[0]["lr"] == 0.05
    assert (loop.epoch, loop.step, loop.best_value, loop.best_epoch, loop.bad_epochs) == (3, 5, 0.25, 2, 1)
    assert loop.best_valid == {"valid_mae": 0.25} and loop.history == [{"epoch": 1}, {"epoch": 2}]
    assert loop.partial == {"task": 1.5, "items": 8.0} and loop.skipped == [{"batch": 1}]


def test_a_wrapped_model_is_saved_and_restored_through_its_module(tmp_path: Path) -> None:
    class Wrapper(nn.Module):  # as DistributedDataParallel holds the model
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    loop = trained_loop()
    loop.model = Wrapper(loop.model)
    state = C.checkpoint_state(loop, [C.rng_state()], [{}], {})
    assert set(state["model"]) == {"weight", "bias"}
    fresh = make_loop(1)
    fresh.model = Wrapper(fresh.model)
    C.restore(fresh, state, Dist())
    assert torch.equal(fresh.model.module.weight, loop.model.module.weight)


def test_each_rank_takes_its_own_rng_and_loss_sums(caplog: pytest.LogCaptureFixture) -> None:
    C.seed_everything(1)
    first = C.rng_state()
    expected = draws()
    C.seed_everything(2)
    second = C.rng_state()
    state = C.checkpoint_state(trained_loop(), [second, first], [{"task": 1.0}, {"task": 2.0}], {})
    loop = make_loop(1)
    with caplog.at_level(logging.WARNING, logger="hcm.training.checkpoints"):
        C.restore(loop, state, Dist(rank=1, world=2))
    assert draws() == expected and loop.partial == {"task": 2.0}
    assert "RNG states" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="hcm.training.checkpoints"):
        C.restore(loop, state, Dist(rank=2, world=3))  # a larger world wraps round
    assert loop.partial == {"task": 1.0}
    assert caplog.messages == ["checkpoint holds RNG states of 2 processes, this run has 3; the resumed run will not "
                               "repeat an uninterrupted one exactly"]


def test_checkpoints_of_earlier_versions_without_step_partial_or_skipped() -> None:
    state = C.checkpoint_state(trained_loop(), [C.rng_state()], [{}], {})
    for key in ("step", "partial", "skipped"):
        del state[key]
    loop = make_loop(1)
    loop.step, loop.partial, loop.skipped = 9, {"x": 1.0}, [{"y": 2}]
    C.restore(loop, state, Dist())
    assert loop.step == 0 and loop.partial == {} and loop.skipped == []
    state["partial"] = []
    C.restore(loop, state, Dist())
    assert loop.partial == {}


def test_a_resume_with_other_settings_is_refused_with_the_differences(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    C.save_last(trained_loop(), C.rng_state(), Dist(), paths, {"config": {"seed": 5, "lr": 0.1}})
    loop = make_loop(1)
    with pytest.raises(TrainingError, match=rf"^cannot resume {paths.root}: the run's settings or its cache no longer "
                                            r"match its checkpoint \(lr: 0\.1 in the checkpoint, 0\.2 now\)\. Put "
                                            r"back the original config\.json"):
        C.resume_from(loop, paths, {"seed": 5, "lr": 0.2}, Dist())
    assert loop.epoch == 0  # nothing was restored
    with pytest.raises(TrainingError, match=r"\(lr: 0\.1 in the checkpoint, 0\.2 now; seed: 5 in the checkpoint, 6 "
                                            r"now\)\."):
        C.resume_from(loop, paths, {"seed": 6, "lr": 0.2}, Dist())


def test_a_checkpoint_without_a_config_resumes_only_a_run_without_settings(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    C.save_last(trained_loop(), C.rng_state(), Dist(), paths, {})
    loop = make_loop(1)
    with pytest.raises(TrainingError, match=r"\(seed: <absent> in the checkpoint, 1 now\)"):
        C.resume_from(loop, paths, {"seed": 1}, Dist())
    C.resume_from(loop, paths, {}, Dist())
    assert loop.epoch == 3


def test_resume_reads_the_checkpoint_onto_the_runs_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = RunPaths(tmp_path / "run")
    C.save_last(trained_loop(), C.rng_state(), Dist(), paths, {})
    devices = []
    load = C.load_checkpoint

    def recording(path: Path, device: torch.device | str = "cpu") -> dict:
        devices.append(device)
        return load(path, device)

    monkeypatch.setattr(C, "load_checkpoint", recording)
    here = torch.device("cpu", 0)
    C.resume_from(make_loop(1), paths, {}, Dist(device=here))
    assert devices == [here]


# ---------------------------------------------------------------------- random states

def test_rng_states_round_trip_in_both_forms() -> None:
    C.seed_everything(2**40 + 3)  # numpy takes the seed modulo 2**32
    state = C.rng_state()
    assert state["numpy"]["keys"].dtype == torch.int64 and isinstance(state["python"]["state"], torch.Tensor)
    expected = draws()
    C.seed_everything(1)
    C.set_rng_state(state)
    assert draws() == expected
    C.seed_everything(4)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = draws()
    C.set_rng_state(old)
    assert draws() == expected


def test_a_seed_repeats_every_generator() -> None:
    C.seed_everything(11)
    first = draws()
    C.seed_everything(11)
    assert draws() == first


class FakeCuda:
    """Stands in for torch.cuda on this CPU machine: one device whose generator state is a tensor."""

    def __init__(self, available: bool) -> None:
        self.available, self.states, self.set = available, [torch.tensor([7], dtype=torch.uint8)], []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(C.torch.cuda, "is_available", lambda: self.available)
        monkeypatch.setattr(C.torch.cuda, "get_rng_state_all", lambda: self.states)
        monkeypatch.setattr(C.torch.cuda, "set_rng_state_all", self.set.append)


def test_cuda_generators_are_saved_and_restored_where_cuda_is(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda(available=True)
    cuda.install(monkeypatch)
    state = C.rng_state()
    assert state["cuda"] is cuda.states
    C.set_rng_state(state)
    assert cuda.set == [cuda.states]
    del state["cuda"]  # a checkpoint of a CPU run, resumed on a GPU machine
    C.set_rng_state(state)
    assert cuda.set == [cuda.states]


def test_without_cuda_its_saved_states_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda(available=False)
    cuda.install(monkeypatch)
    state = C.rng_state()
    assert "cuda" not in state
    C.set_rng_state({**state, "cuda": cuda.states})  # a GPU run's checkpoint resumed on a CPU
    assert cuda.set == []


def test_seeds_past_32_bits_seed_numpy_with_their_low_bits() -> None:
    C.seed_everything(2**32 + 7)
    high = float(np.random.rand())
    np.random.seed(7)
    assert float(np.random.rand()) == high


# ---------------------------------------------------------------------- plain data

def test_plain_turns_numpy_values_into_tensors_and_python_numbers() -> None:
    value = {"a": np.arange(3, dtype=np.uint32), "b": np.ones(2, dtype=np.float32), "s": np.float64(0.5),
             "i": np.int16(3), "t": (np.int64(1), "x"), "l": [np.bool_(True)], "n": None}
    got = C.plain(value)
    assert got["a"].dtype == torch.int64 and got["a"].tolist() == [0, 1, 2]
    assert got["b"].dtype == torch.float32 and got["b"].tolist() == [1.0, 1.0]
    assert type(got["s"]) is float and type(got["i"]) is int and got["t"] == (1, "x") and type(got["t"]) is tuple
    assert got["l"] == [True] and type(got["l"][0]) is bool and got["n"] is None


def test_plain_makes_str_subclasses_str_and_moves_tensors_when_asked() -> None:
    class Version(str):
        pass

    got = C.plain({"v": Version("2.1"), "w": torch.ones(1), "x": [np.ones(1)], "t": (torch.ones(1),)},
                  torch.device("meta"))
    assert type(got["v"]) is str and got["v"] == "2.1"
    assert got["w"].device.type == "meta" and got["x"][0].device.type == "meta" and got["t"][0].device.type == "meta"
    tensor = torch.ones(2)
    assert C.plain(tensor) is tensor


def test_load_checkpoint_moves_tensors_to_the_device(tmp_path: Path) -> None:
    C.save_checkpoint(tmp_path / "a.pt", {"model": {"w": torch.ones(2)}, "epoch": 1})
    assert C.load_checkpoint(tmp_path / "a.pt", "meta")["model"]["w"].device.type == "meta"


# ---------------------------------------------------------------------- refusals and their words

def test_a_file_that_is_not_a_dict_of_model_and_epoch_is_named_with_what_it_holds(tmp_path: Path) -> None:
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointReadError, match=r"list\.pt is not an hcm checkpoint: it lacks \['model', 'epoch'\] "
                                                  r"\(it holds list\); pass a run folder written by `hcm train`$"):
        C.load_checkpoint(tmp_path / "list.pt")
    torch.save({f"k{i}": i for i in range(10)} | {"epoch": 1}, tmp_path / "many.pt")
    with pytest.raises(CheckpointReadError, match=r"lacks \['model'\] \(it holds \['epoch', 'k0', 'k1', 'k2', 'k3', "
                                                  r"'k4', 'k5', 'k6'\]\)"):
        C.load_checkpoint(tmp_path / "many.pt")
    torch.save({"model": {}}, tmp_path / "no_epoch.pt")
    with pytest.raises(CheckpointReadError, match=r"lacks \['epoch'\] \(it holds \['model'\]\)"):
        C.load_checkpoint(tmp_path / "no_epoch.pt")


def test_refusals_quote_the_first_line_of_the_reason(tmp_path: Path) -> None:
    torch.save({"model": {}, "epoch": 1, "x": np.dtype([("a", "f8")])}, tmp_path / "a.pt")
    with pytest.raises(CheckpointReadError) as caught:
        C.load_checkpoint(tmp_path / "a.pt")
    message = str(caught.value)
    assert message.startswith(f"checkpoint {tmp_path / 'a.pt'} was refused: the dtype ") and "\n" not in message
    assert message.endswith("Use a checkpoint written by `hcm train`. Nothing in the file was run")
    assert C._first_line(ValueError("one\ntwo")) == "one"
    assert C._first_line(ValueError("  \n")) == "ValueError"


def test_damage_says_where_to_go_from_there(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(CheckpointReadError, match=rf"^checkpoint {tmp_path / 'a.pt'} cannot be read \(not a readable "
                                                  r"zip archive .*\); it is truncated or damaged, or not a PyTorch "
                                                  r"file\. Resume from another checkpoint or train again$"):
        C.load_checkpoint(tmp_path / "a.pt")
    with pytest.raises(CheckpointReadError, match=rf"^checkpoint {tmp_path / 'b.pt'} does not exist; the run has not "
                                                  r"finished a step yet \(or the file was moved\)$"):
        C.load_checkpoint(tmp_path / "b.pt")


@pytest.mark.parametrize(("code", "reason"), [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "the disk is full"),
                                              (errno.EACCES, "Permission denied")])
def test_a_failed_write_says_why_and_what_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int,
                                                  reason: str) -> None:
    def failing(state: object, target: object) -> None:
        raise OSError(code, "Permission denied" if code == errno.EACCES else "No space")

    monkeypatch.setattr(C.torch, "save", failing)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointWriteError, match=rf"^cannot write checkpoint {path}: {reason} \(.*\); no earlier "
                                                   r"last\.pt existed\. Free space \(or fix the folder's "
                                                   r"permissions\), then resume with `hcm train --resume --run "
                                                   rf"{tmp_path / 'run'}`$"):
        C.save_checkpoint(path, {"model": {}, "epoch": 1})


def test_a_failed_write_without_a_reason_quotes_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(state: object, target: object) -> None:
        raise OSError("no reason given")

    monkeypatch.setattr(C.torch, "save", failing)
    with pytest.raises(CheckpointWriteError, match=r"^cannot write checkpoint .*a\.pt: no reason given \(no reason "
                                                   r"given\); no earlier a\.pt existed"):
        C.save_checkpoint(tmp_path / "a.pt", {"model": {}, "epoch": 1})
