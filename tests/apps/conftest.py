"""A small trained HCMNet run shared by the explain, robustness and report tests (trained once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

import hcm_tiny_cache
from hcm.apps.train import TrainRequest, train_in_workspace
from hcm.core.workspace import Workspace
from hcm.training.evaluate import evaluate_run

SMALL_MODEL = {"epochs": 2, "batch_size": 8, "d_model": 16, "num_heads": 2, "m_ctn": 2, "m_gcn": 1, "m_c": 1}


@dataclass(frozen=True)
class SmallRuns:
    """Two evaluated runs of one tiny regression cache: the full model and w/o CDC."""

    workspace: Workspace
    cache: Path
    full: Path
    no_cdc: Path


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory: pytest.TempPathFactory) -> SmallRuns:
    workspace = Workspace(tmp_path_factory.mktemp("explain") / "hcm-work")
    cache = hcm_tiny_cache.build_cache(workspace.features / "sample" / "tiny", n=48)
    runs = []
    for variant in ("full", "no-cdc"):
        (result,) = train_in_workspace(workspace, TrainRequest(overrides={**SMALL_MODEL, "variant": variant},
                                                               progress=False))
        evaluate_run(result.run_dir, "test", tsne=True, device="cpu", console=Console(quiet=True))
        runs.append(result.run_dir)
    return SmallRuns(workspace, cache, *runs)
