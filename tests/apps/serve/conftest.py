"""Fixtures of the ``hcm serve`` tests: a workspace made by the smallest ``hcm quickstart`` (once per
session), the app on it behind a TestClient and behind a real server on a free loopback port, and
a small workspace with a run folder but no model, for the security checks that need no model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hcm_quickstart_tiny import tiny_quickstart
from hcm_serve_client import make_client

from hcm.core.workspace import Workspace


@dataclass(frozen=True)
class Served:
    """The quickstart workspace, its runs (oldest first, as run keys), a clip of its corpus."""

    workspace: Workspace
    runs: list[str]
    clip: Path


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    workspace = tiny_quickstart(tmp_path_factory.mktemp("serve") / "hcm-work")
    from hcm.training.runs import list_runs

    runs = [p.relative_to(workspace.runs).as_posix() for p in list_runs(workspace.runs)]
    clip = sorted((workspace.data / "quickstart-mosei" / "Raw").rglob("*.mp4"))[0]
    return Served(workspace, runs, clip)


@pytest.fixture(scope="session")
def client(served: Served) -> Iterator:
    """A TestClient of the app on the quickstart workspace (its models load once for the session)."""
    from hcm.apps.serve.settings import ServeSettings

    with make_client(ServeSettings(served.workspace, device="cpu")) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_server(served: Served) -> Iterator[str]:
    """The app on a real server at a free loopback port; yields its address."""
    from hcm.apps.serve.command import background_server
    from hcm.apps.serve.settings import ServeSettings

    with background_server(ServeSettings(served.workspace, port=0, device="cpu")) as url:
        yield url


@pytest.fixture
def bare_workspace(tmp_path: Path) -> Workspace:
    """A workspace with one run folder (a config.json, no model) and a few served files."""
    workspace = Workspace(tmp_path / "hcm-work")
    run = workspace.runs / "sample" / "20250101-000000-full"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"dataset": "sample", "model": {}, "train": {}}))
    (workspace.root / "notes.json").write_text('{"kept": "inside"}')
    return workspace


@pytest.fixture(scope="session")
def served_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real clip (H.264/AAC mp4) of a 6-utterance sample corpus, without extraction or training."""
    from hcm.pipeline.sample import make_sample

    root = tmp_path_factory.mktemp("clip") / "corpus"
    make_sample("mosei", root, 6, 0, progress=False)
    return sorted(root.rglob("*.mp4"))[0]
