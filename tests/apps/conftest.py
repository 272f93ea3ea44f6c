"""Fixtures of the apps tests: a small trained HCMNet run shared by the explain, robustness and report
tests (trained once per session), and a real PostgreSQL server (hcm tune --storage)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hcm_postgres
import hcm_tiny_cache
import pytest
from rich.console import Console

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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server started for the session; skipped with the reason where none
    can be started, failed instead where $HCM_REQUIRE_POSTGRES=1 (CI)."""
    try:
        server = hcm_postgres.start_server()
    except hcm_postgres.Unavailable as reason:
        if os.environ.get("HCM_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (HCM_REQUIRE_POSTGRES=1)")
        pytest.skip(str(reason))
    try:
        yield server.url
    finally:
        server.stop()
