"""Checkpoint files and the random state a resumed run needs to repeat an uninterrupted one.

``last.pt`` holds the whole training state (to resume); ``best.pt`` only what evaluation needs
(:func:`evaluation_state`); both load through :func:`load_checkpoint`, and so do ``best.pt`` files
of earlier versions, which held the whole state.

A checkpoint is one ``torch.save`` dict of plain data: tensors, numbers, strings, lists and
dicts. It is written through :func:`hcm.core.files.atomic_write` (temporary file, fsync,
rename), so a crash or a full disk mid-write leaves the previous checkpoint intact.

:class:`Loop` is the state of a run in progress; :func:`save_last` writes it (``last.pt``, and
``best.pt`` on improvement), :func:`resume_from` puts a fresh loop back where a checkpoint left it.

Checkpoints are read as data only (:func:`hcm.core.torch_archive.read_archive`): hcm walks the
archive's pickle itself and builds tensors, numbers, strings, lists and dicts from checked parts;
a file that names any other Python object (and so could run code) is refused before anything in
it runs. The RNG states are stored as tensors and lists for that reason. Checkpoints written by
hcm before this rule held numpy arrays and numpy scalars; those are read by hcm's own numpy
reader (plain dtypes in their standard form only), so old runs still load, then their values
become plain data.
"""

from __future__ import annotations

import errno
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hcm.core.files import atomic_write
from hcm.core.pickledata import DamagedPickleError, PickleDataError
from hcm.core.torch_archive import read_archive
from hcm.training import TrainingError
from hcm.training.distributed import Dist, barrier, gather
from hcm.training.faults import config_differences
from hcm.training.runs import RunPaths

log = logging.getLogger(__name__)

#: What every hcm checkpoint holds (evaluation needs the first two, resuming all of them).
REQUIRED_KEYS = ("model", "epoch")
#: What ``best.pt`` keeps of the training state: enough to evaluate and predict, nothing to resume.
EVALUATION_KEYS = ("model", "epoch", "best_value", "best_epoch", "best_valid", "config")
class CheckpointReadError(TrainingError):
    """A checkpoint file is missing, truncated, not an hcm checkpoint, or holds code."""


class CheckpointWriteError(TrainingError):
    """A checkpoint could not be written (full disk, no permission); the previous one is intact."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as plain data (tensors, ints, lists)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s output (or the tuples that checkpoints of earlier versions hold)."""
    python, numpy_state = state["python"], state["numpy"]
    if not isinstance(python, dict):
        python = dict(zip(("version", "state", "gauss"), python))
    if not isinstance(numpy_state, dict):
        numpy_state = dict(zip(("kind", "keys", "pos", "has_gauss", "cached_gaussian"), numpy_state))
    random.setstate((python["version"], tuple(torch.as_tensor(python["state"]).tolist()), python["gauss"]))
    keys = np.asarray(torch.as_tensor(numpy_state["keys"]).numpy(), dtype=np.uint32)
    np.random.set_state((numpy_state["kind"], keys, int(numpy_state["pos"]), int(numpy_state["has_gauss"]),
                         float(numpy_state["cached_gaussian"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def evaluation_state(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a training state that evaluation needs (``EVALUATION_KEYS``): no optimizer,
    scheduler, scaler, RNG or history; a ``best.pt`` of this is a fraction of ``last.pt``."""
    return {key: state[key] for key in EVALUATION_KEYS if key in state}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; a failed write leaves the previous file as it was."""
    try:
        atomic_write(path, lambda tmp: torch.save(plain(state), tmp))
    except OSError as error:
        reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror or str(error)
        kept = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} existed"
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: {reason} ({error}); {kept}. Free space (or fix the folder's "
            f"permissions), then resume with `hcm train --resume --run {path.parent.parent}`"
        ) from error


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read an hcm checkpoint as data only; a clear :class:`CheckpointReadError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"checkpoint {path} does not exist; the run has not finished a step yet "
                                  f"(or the file was moved)")
    try:
        state = read_archive(path, numpy=True)
    except DamagedPickleError as error:
        raise CheckpointReadError(f"checkpoint {path} cannot be read ({_first_line(error)}); it is truncated or "
                                  f"damaged, or not a PyTorch file. Resume from another checkpoint or train "
                                  f"again") from None
    except PickleDataError as error:
        raise CheckpointReadError(
            f"checkpoint {path} was refused: {_first_line(error)}. hcm never writes that, and loading it could "
            f"run code; hcm reads checkpoints as data only (tensors, numbers, strings, lists, dicts). Use a "
            f"checkpoint written by `hcm train`. Nothing in the file was run"
        ) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        found = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointReadError(f"{path} is not an hcm checkpoint: it lacks {missing} (it holds {found}); "
                                  f"pass a run folder written by `hcm train`")
    return plain(state, torch.device(device))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def plain(value: Any, device: torch.device | None = None) -> Any:
    """numpy scalars -> Python numbers, numpy arrays -> tensors, str subclasses -> str (nested);
    with ``device``, every tensor is moved there."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint32 else value)
    if isinstance(value, torch.Tensor):
        return value if device is None else value.to(device)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)  # str subclasses such as torch's version string
    if isinstance(value, dict):
        return {k: plain(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v, device) for v in value)
    return value


@dataclass
class Loop:
    """Everything one training run carries from step to step and epoch to epoch: what ``last.pt`` saves."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    epoch: int = 0  # epochs finished
    best_value: float | None = None
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0  # batches done in the unfinished epoch (0 between epochs)
    partial: dict[str, float] = field(default_factory=dict)  # that epoch's loss sums so far, and "items"
    skipped: list[dict[str, Any]] = field(default_factory=list)  # non-finite batches skipped (skip_nonfinite)


def save_last(loop: Loop, rng: dict[str, Any], d: Dist, paths: RunPaths, extra: dict[str, Any],
              best: bool = False) -> None:
    """Write ``last.pt`` (and ``best.pt``) on rank 0, with every rank's RNG state and loss sums.

    Every rank calls it with its own RNG state ``rng`` (gathered here); ``extra`` goes into the file
    as is (the run config).
    """
    rngs = gather(d, rng)
    partial = gather(d, dict(loop.partial))
    if d.main:
        state = checkpoint_state(loop, rngs, partial, extra)
        save_checkpoint(paths.last, state)
        if best:
            save_checkpoint(paths.best, evaluation_state(state))
    barrier(d)


def checkpoint_state(loop: Loop, rng: list[dict[str, Any]], partial: list[dict[str, float]],
                     extra: dict[str, Any]) -> dict[str, Any]:
    """What ``last.pt`` holds: every state a resumed run needs (plain data only)."""
    module = loop.model.module if hasattr(loop.model, "module") else loop.model
    return {
        "model": module.state_dict(), "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(), "scaler": loop.scaler.state_dict(),
        "epoch": loop.epoch, "step": loop.step, "partial": partial, "skipped": loop.skipped,
        "best_value": loop.best_value, "best_epoch": loop.best_epoch, "best_valid": loop.best_valid,
        "bad_epochs": loop.bad_epochs, "history": loop.history, "rng": rng, **extra,
    }


def restore(loop: Loop, state: dict[str, Any], d: Dist) -> None:
    """Put a loop back where ``state`` left it, this rank's RNG and loss sums included."""
    module = loop.model.module if hasattr(loop.model, "module") else loop.model
    module.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.scaler.load_state_dict(state["scaler"])
    for name in ("epoch", "best_value", "best_epoch", "best_valid", "bad_epochs", "history"):
        setattr(loop, name, state[name])
    partial = state.get("partial") or [{}]
    loop.step, loop.skipped = int(state.get("step", 0)), list(state.get("skipped", []))
    loop.partial = dict(partial[d.rank % len(partial)])
    rng = state["rng"]
    if len(rng) != d.world:
        log.warning("checkpoint holds RNG states of %d processes, this run has %d; the resumed run "
                    "will not repeat an uninterrupted one exactly", len(rng), d.world)
    set_rng_state(rng[d.rank % len(rng)])


def resume_from(loop: Loop, paths: RunPaths, config: dict[str, Any], d: Dist) -> None:
    """Continue ``loop`` from ``last.pt``, refusing a checkpoint whose run config no longer matches."""
    state = load_checkpoint(paths.last, d.device)
    differences = config_differences(state.get("config", {}), config)
    if differences:
        raise TrainingError(
            f"cannot resume {paths.root}: the run's settings or its cache no longer match its checkpoint "
            f"({'; '.join(differences)}). Put back the original config.json and cache, or start a new run "
            f"with `hcm train`")
    restore(loop, state, d)
    log.info("resuming %s at epoch %d, step %d", paths.root, loop.epoch + 1, loop.step)
