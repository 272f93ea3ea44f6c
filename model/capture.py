"""Whether the model runs inside a graph capture, where it must not read tensor values on the host.

A CUDA graph records kernels without running them, so a ``bool(t)``, ``float(t)`` or ``t.item()``
inside a captured step has no value to read (CUDA refuses it: "operation not permitted when stream
is capturing"). The few model functions that branch on values (input checks, the OT backends'
choice of path, an empty-pair shortcut) ask :func:`capturing` and then take a path that needs no
read: checks are left out, the choice falls on the path that is safe for every input.

:func:`sync_free` marks the same rules on any device; ``hcm.training.step``'s CPU dry mode
runs its stand-in capture under it, so the CPU tests walk the paths a CUDA capture takes.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch

_SYNC_FREE: ContextVar[bool] = ContextVar("hcm_sync_free", default=False)


def capturing() -> bool:
    """True while a CUDA graph is being captured on this thread's stream, or inside :func:`sync_free`."""
    return _SYNC_FREE.get() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


@contextmanager
def sync_free() -> Iterator[None]:
    """Run the block under the capture rules (no host reads of tensor values) on any device."""
    token = _SYNC_FREE.set(True)
    try:
        yield
    finally:
        _SYNC_FREE.reset(token)
