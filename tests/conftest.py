"""Shared test fixtures: thread count, the shared reference fixtures, a temporary workspace, stand-in
paper weights, and the tiny synthetic caches, dataset facts and stand-in model the training-side tests run on.

The builders live in tests/helpers (importable by bare name through setup.cfg's ``pythonpath``)
because subprocesses need them too: the trainer imports ``hcm_tiny_model:TinyNet`` by name, also
in DDP workers. Tests use the fixtures.
"""

from __future__ import annotations

import importlib.util
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import hcm_signal_model
import hcm_tiny_cache
import hcm_tiny_model
import pytest
import torch

from hcm.model.registry import MODELS
from hcm.training.settings import DatasetFacts

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


@pytest.fixture(autouse=True)
def torch_seed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from a torch RNG state of its own, made from pytest-randomly's seed (printed
    at the top of the run) and the test's id, as pytest-randomly does for ``random`` and numpy: a
    test's random numbers do not depend on which tests ran before it, and one seed repeats them.
    The global state is put back afterwards."""
    seed = request.config.getoption("randomly_seed", default=None)
    if not isinstance(seed, int):
        seed = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((seed + zlib.crc32(request.node.nodeid.encode())) % 2**63)
        yield


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    """Put torch's intra-op thread count back after the test, whatever the test set it to (every
    test: a command run in-process with --threads sets it too)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread(restore_threads: None) -> None:
    """Run with one intra-op thread (restored afterwards): these tensors are tiny, and on a shared
    CPU the thread hand-offs of a second thread cost far more than they save."""
    torch.set_num_threads(1)


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


# The test stand-ins, registered under the names their runs record (hcm evaluates registered models only).
MODELS.register("hcm_tiny_model:TinyNet")(hcm_tiny_model.TinyNet)
MODELS.register("hcm_signal_model:SignalNet")(hcm_signal_model.SignalNet)


@pytest.fixture(scope="session")
def tiny_net() -> TinyNetSpec:
    return TinyNetSpec("hcm_tiny_model:TinyNet", hcm_tiny_model.TinyNet)


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fused Sinkhorn kernel is built into pytest's cache folder (kept across runs), not the
    user's ``~/.cache/hcm/kernels``; an explicit ``HCM_KERNEL_CACHE`` is left as it is."""
    given = os.environ.get("HCM_KERNEL_CACHE")
    if given:
        yield Path(given)
        return
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("hcm-kernels") if cache else tmp_path_factory.mktemp("hcm-kernels"))
    os.environ["HCM_KERNEL_CACHE"] = str(folder)
    yield folder
    os.environ.pop("HCM_KERNEL_CACHE", None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say the order's seed at the end as well: `make test` runs pytest with -q, which hides the
    header where pytest-randomly prints it."""
    seed = config.getoption("randomly_seed", default=None)
    if isinstance(seed, int):
        terminalreporter.write_line(f"tests ran in random order: pass --randomly-seed={seed} to repeat it")
