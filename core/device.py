"""Choosing the torch device: ``auto`` takes CUDA when there is one; an unavailable CUDA is an
error, never a silent fallback to the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hcm.core.errors import UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str, local_rank: int = 0) -> "torch.device":
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device (``cuda`` takes the local rank's GPU)."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for CUDA but torch sees no GPU here; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
