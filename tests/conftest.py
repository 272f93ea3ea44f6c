"""Shared test fixtures: thread count, the shared reference fixtures, a temporary workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
# The reference fixtures: ../shared/fixtures beside the repository, or $HCM_FIXTURES_DIR.
SHARED_FIXTURES = Path(os.environ.get("HCM_FIXTURES_DIR") or REPO.parent / "shared" / "fixtures")


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` beside the repository (or ``$HCM_FIXTURES_DIR``); skipped where absent,
    failed in CI."""
    if SHARED_FIXTURES.is_dir():
        return SHARED_FIXTURES
    reason = f"reference fixtures not found at {SHARED_FIXTURES}"
    if os.environ.get("HCM_REQUIRE_FIXTURES") == "1":
        pytest.fail(reason + " (HCM_REQUIRE_FIXTURES=1)")
    pytest.skip(reason)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace, also exported as $HCM_HOME."""
    root = tmp_path / "hcm-work"
    monkeypatch.setenv("HCM_HOME", str(root))
    return root
