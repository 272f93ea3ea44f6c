"""Shared test fixtures: thread count, the shared reference fixtures, stand-in paper weights, a workspace."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = Path(os.environ.get("HCM_FIXTURES_DIR") or REPO.parent / "shared" / "fixtures")
STANDIN_SCRIPT = REPO / "benchmarks" / "standin_weights.py"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The reference fixtures: $HCM_FIXTURES_DIR, else ``../shared/fixtures`` beside the repository;
    skipped where absent, failed in CI."""
    if SHARED_FIXTURES.is_dir():
        return SHARED_FIXTURES
    reason = f"reference fixtures not found at {SHARED_FIXTURES} (set HCM_FIXTURES_DIR)"
    if os.environ.get("HCM_REQUIRE_FIXTURES") == "1":
        pytest.fail(reason + " (HCM_REQUIRE_FIXTURES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def standin() -> ModuleType:
    """``benchmarks/standin_weights.py``, imported by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("hcm_standin_weights", STANDIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def standin_weights(standin: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full-size random paper-profile weights in the released formats (~2.2 GB), written once per
    session; $HCM_STANDIN_WEIGHTS names a folder written earlier by the same script instead."""
    given = os.environ.get("HCM_STANDIN_WEIGHTS")
    if given:
        return Path(given)
    folder = tmp_path_factory.mktemp("standin-weights")
    standin.write_standin_weights(folder)
    return folder


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace, also exported as $HCM_HOME."""
    root = tmp_path / "hcm-work"
    monkeypatch.setenv("HCM_HOME", str(root))
    return root
