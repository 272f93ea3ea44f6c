"""Checkpoint files and the random state a resumed run needs to repeat an uninterrupted one.

A checkpoint is one ``torch.save`` dict, written through :func:`hcm.core.files.atomic_write`
(temporary file, fsync, rename), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcm.core.files import atomic_write
from hcm.training import TrainingError


class CheckpointReadError(TrainingError):
    """A checkpoint file is missing, truncated or not an hcm checkpoint."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; was the run's first epoch finished?")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # torch raises several types for damaged files
        raise CheckpointReadError(f"checkpoint {path} cannot be read ({error}); it is damaged") from error
