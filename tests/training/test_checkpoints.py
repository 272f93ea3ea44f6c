"""Checkpoint files are data: plain on disk, code refused, old files still readable, damage named."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hcm_pickles import RunsCode

from hcm.training import checkpoints as C
from hcm.training.checkpoints import CheckpointReadError, CheckpointWriteError, load_checkpoint, save_checkpoint


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_states_are_plain_data_and_restore_every_generator(tmp_path: Path) -> None:
    C.seed_everything(7)
    _draws()
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "epoch": 0, "rng": [C.rng_state()]})
    expected = _draws()
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # torch's own data-only loader, no allow-list
    C.seed_everything(99)
    C.set_rng_state(raw["rng"][0])
    assert _draws() == expected


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3, "extra": RunsCode(marker)}, tmp_path / "best.pt")
    with pytest.raises(CheckpointReadError, match=r"refused.*builtins\.exec.*could run code"):
        load_checkpoint(tmp_path / "best.pt")
    assert not marker.exists()


def test_checkpoints_of_earlier_versions_load_safely(tmp_path: Path) -> None:
    """Before checkpoints became plain data they held numpy RNG tuples, numpy scalars and torch's version."""
    C.seed_everything(3)
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = _draws()
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 2, "best_value": np.float64(0.25), "rng": [old_rng],
                "history": [{"valid_mae": np.float32(0.5)}], "config": {"torch": torch.__version__}},
               tmp_path / "old.pt")
    state = load_checkpoint(tmp_path / "old.pt")
    assert type(state["best_value"]) is float and type(state["history"][0]["valid_mae"]) is float
    assert type(state["config"]["torch"]) is str
    C.seed_everything(99)
    C.set_rng_state(state["rng"][0])
    assert _draws() == expected


def test_truncated_foreign_and_missing_files_get_clear_messages(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.randn(64, 64)}, "epoch": 1})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match="cut.pt cannot be read .*truncated or damaged"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    lacks = r"foreign.pt is not an hcm checkpoint: it lacks \['model', 'epoch'\]"
    with pytest.raises(CheckpointReadError, match=lacks):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint at all\n")
    with pytest.raises(CheckpointReadError, match="notes.pt cannot be read"):
        load_checkpoint(tmp_path / "notes.pt")
    with pytest.raises(CheckpointReadError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})

    def full_disk(state, target) -> None:
        Path(target).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint .*last.pt: the disk is full.*"
                                                   "previous last.pt is intact.*hcm train --resume --run"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
