"""The data flow of docs/architecture.md, checked on the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NETWORK_MODULES = ("hcmnet", "layers", "atomic", "graphs", "composition", "losses", "config")
ENCODER_LIBRARIES = ("h5py", "transformers", "efficientnet_pytorch", "librosa", "spacy", "av", "hcm.pipeline",
                     "hcm.cache")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _hits(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imported_modules(path) if any(n == f or n.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("path", _python_files("cache"), ids=lambda p: p.name)
def test_cache_imports_neither_stage(path: Path) -> None:
    assert not _hits(path, ("hcm.pipeline", "hcm.model")), path


@pytest.mark.parametrize("path", _python_files("pipeline"), ids=lambda p: p.name)
def test_pipeline_never_imports_the_model(path: Path) -> None:
    assert not _hits(path, ("hcm.model",)), path


@pytest.mark.parametrize("name", NETWORK_MODULES)
def test_network_modules_take_plain_tensors(name: str) -> None:
    path = REPO / "model" / f"{name}.py"
    assert not _hits(path, ENCODER_LIBRARIES), path


@pytest.mark.parametrize("path", _python_files("model/ot"), ids=lambda p: p.name)
def test_ot_imports_no_encoder_or_storage_library(path: Path) -> None:
    assert not _hits(path, ENCODER_LIBRARIES), path
