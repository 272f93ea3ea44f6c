"""``hcm evaluate --missing/--noise``: a run's metrics with modalities missing or noisy, in a workspace
(the conditions and what they do: ``hcm.training.robustness``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hcm.apps.train import evaluate_command
from hcm.core.errors import UsageError
from hcm.core.workspace import Workspace
from hcm.training.robustness import robustness_run


def robustness_command(workspace: Workspace, run: Path | None, split: str, features: Path | None,
                       missing: Sequence[str], noise: Sequence[float], device: str = "auto",
                       threads: int | None = None, as_json: bool = False,
                       trust_model_code: bool = False) -> int:
    """Score the run clean and under every condition; print the table (or JSON) and write robustness.*."""
    def score(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return robustness_run(*args, missing=missing, noise=noise, **kwargs)
        except ValueError as error:  # a modality set the run cannot take
            raise UsageError(str(error)) from error

    return evaluate_command(workspace, run, split, features, False, device, threads, as_json, trust_model_code,
                            score)
