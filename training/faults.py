"""What training does when something goes wrong: a stop signal, a non-finite number, a run that
no longer matches its checkpoint, a cache that vanished (the policy table is in docs/training.md).

- SIGTERM (how SLURM and Kubernetes preempt) and SIGINT (Ctrl-C) become a *request*: training
  finishes the step it is in, writes a mid-epoch checkpoint and exits with 128 + the signal
  number (143, 130), printing the command that continues the run. A second Ctrl-C stops at once.
  Under ``torchrun`` the ranks agree on the request at every step, so they all stop at one step.
- A loss or gradient that is not finite stops the run with the epoch, step and item ids of the
  batch, or skips the batch while the ``skip_nonfinite`` budget lasts.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from hcm.core.errors import Interrupted
from hcm.training import TrainingError

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Run-config keys (or whole sections) that may differ between a checkpoint and the run resuming it:
#: ``train.epochs`` grows when a finished run is extended (``hcm train --resume --epochs N``, which
#: records it in config.json).
RESUME_MAY_CHANGE = ("created", "torch", "world_size", "cache", "train.skip_nonfinite", "train.epochs", "provenance",
                     "extended")
MAX_LISTED = 8


class _Absent:
    """Stands for a key one of two configs lacks (no config value can equal it)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


class NonFiniteLossError(TrainingError):
    """The loss or the gradient became NaN or infinite."""


class TrainingInterrupted(Interrupted):
    """Training stopped on SIGTERM/SIGINT after writing a checkpoint it can resume from."""


class StopSignals:
    """While active, SIGTERM and SIGINT ask training to stop after the current step.

    ``signum`` is the first signal received (0 while none). Handlers can only be installed in the
    main thread; elsewhere (a training started from a worker thread) signals keep their handlers.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        if not self.signum:
            self.signum = signum
            log.warning("%s received: training stops after the current step and writes a checkpoint "
                        "(Ctrl-C again stops at once)", signal.Signals(signum).name)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops them cleanly."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def resume_command(run_dir: Path, extra: str = "") -> str:
    return f"hcm train --resume --run {Path(run_dir).resolve()}{extra}"


def interrupted(signum: int, where: str, last: Path, run_dir: Path, world: int) -> TrainingInterrupted:
    """The error a stop signal ends training with: where it stopped and how to continue."""
    name = signal.Signals(signum).name
    launcher = " (under torchrun: the same torchrun line with these hcm options)" if world > 1 else ""
    return TrainingInterrupted(
        f"training stopped by {name} at {where}; {last} holds everything needed to continue. "
        f"Continue with{launcher}:\n  {resume_command(run_dir)}", 128 + signum)


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the run config stored in a checkpoint and the one a resume would use."""
    old, new = _flatten(saved), _flatten(now)
    keys = [k for k in sorted(set(old) | set(new)) if k not in RESUME_MAY_CHANGE and k.partition(".")[0]
            not in RESUME_MAY_CHANGE]
    changed = [k for k in keys if old.get(k, ABSENT) != new.get(k, ABSENT)]
    lines = [f"{k}: {_short(old.get(k, ABSENT))} in the checkpoint, {_short(new.get(k, ABSENT))} now"
             for k in changed[:MAX_LISTED]]
    if len(changed) > MAX_LISTED:
        lines.append(f"and {len(changed) - MAX_LISTED} more")
    return lines


def _flatten(config: dict[str, Any], prefix: str = "", depth: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth > 1:
            out.update(_flatten(value, f"{name}.", depth - 1))
        else:
            out[name] = value
    return out


def _short(value: Any, width: int = 48) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
