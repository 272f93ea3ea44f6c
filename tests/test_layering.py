"""The package layering of docs/architecture.md, checked on every import of every module.

    cli -> apps -> training -> model -> core
                   training -> cache -> core
           apps -> pipeline -> cache
    cli -> core

cli.py calls one function of ``apps`` per command and imports nothing else of hcm but ``core``.

An arrow may only point down this table; imports inside functions count like any other, so a
lazy import cannot hide a back-arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package -> the hcm packages it may import (besides itself and the root ``hcm``, which holds
# only the version)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "cache": {"core"},
    "model": {"core"},
    "pipeline": {"cache", "core"},
    "training": {"model", "cache", "core"},
    "apps": {"training", "model", "pipeline", "cache", "core"},
    "cli": {"apps", "core"},
    "__main__": {"cli"},
}
STORAGE_AND_ENCODER_LIBRARIES = ("h5py", "transformers", "efficientnet_pytorch", "librosa", "spacy", "av")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_of(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if p.relative_to(root).parts[0].removesuffix(".py") in ALLOWED)


def back_arrows(root: Path) -> list[str]:
    """``file imports hcm.X`` for every import that the layering does not allow."""
    found = []
    for path in source_files(root):
        own = package_of(path, root)
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] != "hcm" or len(parts) == 1:
                continue
            target = parts[1]
            if target != own and target not in ALLOWED[own]:
                found.append(f"{path.relative_to(root)} imports {name} ({own} -> {target} is not allowed)")
    return found


def test_the_allowed_arrows_have_no_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(package: str, trail: tuple[str, ...]) -> None:
        assert package not in trail, f"cycle: {' -> '.join(trail + (package,))}"
        for target in ALLOWED.get(package, ()):
            visit(target, trail + (package,))
        seen[package] = 1

    for package in ALLOWED:
        visit(package, ())


def test_every_package_is_placed() -> None:
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(ALLOWED), f"packages without a layer: {sorted(packages - set(ALLOWED))}"


def test_the_tree_has_no_back_arrow() -> None:
    assert back_arrows(REPO) == []


def test_a_planted_back_arrow_is_caught(tmp_path: Path) -> None:
    for package in ("model", "training", "core"):
        (tmp_path / package).mkdir()
    (tmp_path / "training" / "loop.py").write_text("from hcm.model.hcmnet import HCMNet\n")
    (tmp_path / "model" / "sneaky.py").write_text(
        "def later():\n    from hcm.training.trainer import train  # hidden inside a function\n    return train\n")
    (tmp_path / "core" / "names.py").write_text("import hcm\nfrom hcm import __version__\n")
    assert back_arrows(tmp_path) == [
        "model/sneaky.py imports hcm.training.trainer (model -> training is not allowed)"]


@pytest.mark.parametrize("path", sorted((REPO / "model").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_the_network_takes_plain_tensors(path: Path) -> None:
    """model/ loads no storage or encoder library: it runs on tensors from any source."""
    hits = [n for n in imported_modules(path)
            if any(n == lib or n.startswith(lib + ".") for lib in STORAGE_AND_ENCODER_LIBRARIES)]
    assert not hits, f"{path} imports {hits}"


def test_core_imports_torch_only_inside_functions() -> None:
    """The command line answers --help without torch: core's module level never imports it."""
    for path in sorted((REPO / "core").rglob("*.py")):
        top = ast.parse(path.read_text(encoding="utf-8")).body
        for node in top:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "torch" for n in names), f"{path} imports torch at module level"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(("hcm",) + (parts[:-1] if parts[-1] == "__init__" else parts))


def module_imports(path: Path, root: Path, known: set[str]) -> set[str]:
    """The hcm modules a file imports at any depth; ``from package import module`` names the module.

    Imports under ``if TYPE_CHECKING:`` run only for type checkers and do not count.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for stmt in node.body for inner in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= modules if len(modules) == len(node.names) else modules | {node.module}
    return {name for name in found if name in known} - {module_name(path, root)}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_cycles(root: Path) -> list[str]:
    """Every import cycle between hcm modules, counting imports inside functions (one line per cycle)."""
    files = source_files(root)
    known = {module_name(p, root) for p in files}
    graph = {module_name(p, root): module_imports(p, root, known) for p in files}
    cycles, done = set(), set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            loop = trail[trail.index(module):]
            start = loop.index(min(loop))
            cycles.add(" -> ".join(loop[start:] + loop[:start] + [min(loop)]))
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, trail + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return sorted(cycles)


def test_no_module_imports_back() -> None:
    assert module_cycles(REPO) == []


def test_a_cycle_hidden_in_a_function_is_caught(tmp_path: Path) -> None:
    (tmp_path / "model" / "ot").mkdir(parents=True)
    (tmp_path / "model" / "ot" / "dense.py").write_text(
        "def plan():\n    from hcm.model.ot.fused import fast  # hidden inside a function\n    return fast\n")
    (tmp_path / "model" / "ot" / "fused.py").write_text("from hcm.model.ot.dense import plan\n")
    (tmp_path / "model" / "ot" / "problem.py").write_text(
        "from typing import TYPE_CHECKING\nfrom hcm.model.ot import dense\nif TYPE_CHECKING:\n"
        "    from hcm.model.ot.api import Plan  # for type checkers only: no cycle\n")
    (tmp_path / "model" / "ot" / "api.py").write_text("from hcm.model.ot.problem import dense\n")
    assert module_cycles(tmp_path) == ["hcm.model.ot.dense -> hcm.model.ot.fused -> hcm.model.ot.dense"]


MAX_MODULE_LINES = 450  # a module longer than this holds more than one job: split it by job


def test_no_module_is_longer_than_its_job() -> None:
    long = {str(p.relative_to(REPO)): n for p in source_files(REPO)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"
