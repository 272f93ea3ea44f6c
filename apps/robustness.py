"""``hcm evaluate --missing/--noise``: a run's metrics with modalities missing or noisy, in a workspace
(the conditions and what they do: ``hcm.training.robustness``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from hcm.core.errors import UsageError, report_errors
from hcm.core.threads import set_threads
from hcm.core.workspace import Workspace
from hcm.training.robustness import robustness_run
from hcm.training.runs import find_latest_run


def robustness_command(workspace: Workspace, run: Path | None, split: str, features: Path | None,
                       missing: Sequence[str], noise: Sequence[float], device: str = "auto",
                       threads: int | None = None, as_json: bool = False,
                       trust_model_code: bool = False) -> int:
    """Score the run clean and under every condition; print the table (or JSON) and write robustness.*."""
    def work() -> None:
        from rich.console import Console

        set_threads(threads)
        chosen = Path(run) if run is not None else find_latest_run(workspace.runs)
        try:
            report = robustness_run(chosen, split, missing, noise, cache_dir=features, device=device,
                                    console=Console(stderr=True) if as_json else None,
                                    trust_model_code=trust_model_code)
        except ValueError as error:  # a modality set the run cannot take
            raise UsageError(str(error)) from error
        if as_json:
            print(json.dumps(report, indent=1, default=str))

    return report_errors(work)
