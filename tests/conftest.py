"""Shared test fixtures: thread count, the shared reference fixtures, a temporary workspace, and
the tiny synthetic caches, dataset facts and stand-in model the training-side tests run on.

The builders live in tests/helpers (importable by bare name through setup.cfg's ``pythonpath``)
because subprocesses need them too: the trainer imports ``hcm_tiny_model:TinyNet`` by name, also
in DDP workers. Tests use the fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import hcm_tiny_cache
import hcm_tiny_model
from hcm.training.settings import DatasetFacts

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


@dataclass(frozen=True)
class TinyCaches:
    """``tiny_cache(directory=None, n=48, task="regression", dataset="sample", profile="tiny", seed=0)``
    writes a synthetic cache (2/3 train, 1/6 valid, 1/6 test, shards of 16; labels follow the text
    features) into ``directory``, else into a fresh temporary ``.../features/sample/<profile>``, and
    returns its folder. ``dims`` are the stream widths, ``streams`` the modality -> streams map,
    ``classes`` the class names of a classification cache."""

    make_folder: Callable[[str], Path]
    dims = hcm_tiny_cache.DIMS
    streams = hcm_tiny_cache.STREAMS
    classes = hcm_tiny_cache.CLASSES

    def __call__(self, directory: Path | None = None, **kwargs) -> Path:
        folder = directory or self.make_folder(kwargs.get("profile", "tiny"))
        return hcm_tiny_cache.build_cache(folder, **kwargs)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> TinyCaches:
    """Factory of tiny synthetic caches (see ``TinyCaches``)."""
    return TinyCaches(lambda profile: tmp_path_factory.mktemp("features") / "sample" / profile)


@pytest.fixture(scope="session")
def tiny_facts() -> Callable[..., DatasetFacts]:
    """Factory: ``tiny_facts(task="regression")``, the dataset facts of a ``tiny_cache``."""
    return hcm_tiny_model.tiny_facts


@dataclass(frozen=True)
class TinyNetSpec:
    """The stand-in model for trainer tests: ``factory`` is the import string the trainer takes
    (``model_factory=``), ``cls`` the class it names (e.g. to patch its ``forward``)."""

    factory: str
    cls: type


@pytest.fixture(scope="session")
def tiny_net() -> TinyNetSpec:
    return TinyNetSpec("hcm_tiny_model:TinyNet", hcm_tiny_model.TinyNet)
