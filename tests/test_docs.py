"""The documentation points at things that exist, and every benchmark has its measured table.

- Every repository path (`model/ot/api.py`, `configs/quickstart.json`, `tests/...`) and every
  module reference (`hcm.model.ot.sinkhorn`) in README.md, docs/*.md, benchmarks/RESULTS.md and
  the docstrings of every module outside tests/ must exist, so a file or module that moves cannot
  leave a stale name behind.
- Every option named in an `hcm ...` command in those texts is an option of that command.
- Every `benchmarks/*.py` appears in benchmarks/RESULTS.md with the command that measured it.
"""

from __future__ import annotations

import ast
import itertools
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md", REPO / "benchmarks" / "RESULTS.md"]
TOP_LEVEL = ("apps", "benchmarks", "cache", "configs", "core", "docs", "model", "pipeline", "tests", "training")
# A path starts at a top-level folder (not inside another path or word: `~/.cache/clip` is not `cache/`).
PATH = re.compile(r"(?<![\w./~-])(?:%s)/[\w./{},*<>-]*" % "|".join(TOP_LEVEL))
MODULE = re.compile(r"(?<![\w.])hcm(?:\.\w+)+")
# A bare file name (`clip.py`, `test_settings.py`): some file of the repository must carry it.
BARE_FILE = re.compile(r"(?<![\w./~{,-])\w+\.py\b")
PLACEHOLDER = re.compile(r"[<*]")


def expand_braces(text: str) -> list[str]:
    """`a/{b,c}.py` -> [`a/b.py`, `a/c.py`] (shell brace expansion, any number of groups)."""
    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def path_references(text: str) -> set[str]:
    """Repository paths named in a markdown text, braces expanded, placeholders (`<name>`, `*`) left out."""
    found = set()
    for match in PATH.finditer(text):
        raw = match.group(0).rstrip(".,")
        for path in expand_braces(raw):
            if not PLACEHOLDER.search(path):
                found.add(path)
    return found


def module_file(dotted: str) -> Path | None:
    """The source file of module ``dotted`` (``hcm.a.b``) in this repository, or None."""
    base = REPO.joinpath(*dotted.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def top_level_names(source: Path) -> frozenset[str]:
    """Names bound at the top level of a module: definitions, assignments and imports."""
    names: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return frozenset(names)


def module_reference_exists(dotted: str) -> bool:
    """`hcm.a.b` is a module, or `hcm.a.b.name` a name bound at the top of module `hcm.a.b`."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        source = module_file(".".join(parts[:cut])) if cut > 1 else REPO / "__init__.py"
        if source is None:
            continue
        rest = parts[cut:]
        return not rest or rest[0] in top_level_names(source)
    return False


def module_references(text: str) -> set[str]:
    return {m.group(0).rstrip(".") for m in MODULE.finditer(text)}


@lru_cache(maxsize=None)
def repository_file_names() -> frozenset[str]:
    files = itertools.chain(REPO.glob("*.py"), *((REPO / top).rglob("*.py") for top in TOP_LEVEL))
    return frozenset(p.name for p in files)


def docstrings(source: Path) -> str:
    """Every docstring of a module (module, classes, functions), one after another."""
    nodes = ast.walk(ast.parse(source.read_text()))
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return "\n".join(ast.get_docstring(n, clean=False) or "" for n in nodes if isinstance(n, kinds))


def source_files() -> list[Path]:
    """The modules of hcm and its benchmarks (tests aside)."""
    tops = [top for top in TOP_LEVEL if top != "tests"]
    return sorted(itertools.chain(REPO.glob("*.py"), *((REPO / top).rglob("*.py") for top in tops)))


@pytest.mark.parametrize("source", source_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_name_in_the_docstrings_exists(source: Path) -> None:
    text = docstrings(source)
    stale = sorted(p for p in path_references(text) if not (REPO / p).exists())
    stale += sorted({m.group(0) for m in BARE_FILE.finditer(text)} - repository_file_names())
    stale += sorted(m for m in module_references(text) if not module_reference_exists(m))
    stale += hcm_option_problems(text)
    assert not stale, f"the docstrings of {source.relative_to(REPO)} name what does not exist: {stale}"


# `hcm train --epochs 2`, `hcm cache info DIR --json`: the words up to the first option pick the command.
HCM_COMMAND = re.compile(r"(?<![\w/.-])hcm((?: +[a-z][\w-]*)+)((?: +[^`\n|;]*)?)")
OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")


@lru_cache(maxsize=None)
def cli_options() -> dict[tuple[str, ...], frozenset[str]]:
    """Every command path of `hcm` (``()``, ``("train",)``, ``("cache", "info")``) -> its option names
    (the root's, such as --workdir, are valid after any command)."""
    import click
    import typer.main

    from hcm.cli import app

    found: dict[tuple[str, ...], frozenset[str]] = {}

    def walk(command: click.Command, path: tuple[str, ...], inherited: frozenset[str]) -> None:
        names = inherited | {o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--")}
        found[path] = frozenset(names | {"--help"})
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, path + (name,), inherited | ({"--workdir"} if not path else frozenset()))

    walk(typer.main.get_command(app), (), frozenset())
    return found


def hcm_option_problems(text: str) -> list[str]:
    """`hcm CMD --opt` uses in ``text`` whose command does not exist or does not take ``--opt``."""
    commands = cli_options()
    problems = []
    for match in HCM_COMMAND.finditer(text):
        words, path = match.group(1).split(), ()
        for word in words:
            if path + (word,) not in commands:
                break
            path += (word,)
        if not path:
            continue  # prose ("hcm picks the best epoch"), not a command
        unknown = sorted(set(OPTION.findall(match.group(0))) - commands[path])
        problems += [f"hcm {' '.join(path)} {option}" for option in unknown]
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_hcm_option_named_in_the_docs_exists(doc: Path) -> None:
    problems = hcm_option_problems(doc.read_text())
    assert not problems, f"{doc.name} names options that hcm does not have: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_named_in_the_docs_exists(doc: Path) -> None:
    missing = sorted(p for p in path_references(doc.read_text()) if not (REPO / p).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_name_in_the_docs_exists(doc: Path) -> None:
    names = {m.group(0) for m in BARE_FILE.finditer(doc.read_text())}
    missing = sorted(names - repository_file_names())
    assert not missing, f"{doc.name} names files that are nowhere in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_module_named_in_the_docs_exists(doc: Path) -> None:
    missing = sorted(m for m in module_references(doc.read_text()) if not module_reference_exists(m))
    assert not missing, f"{doc.name} names modules or objects that do not exist: {missing}"


def test_the_checks_catch_stale_names() -> None:
    text = "See `model/ot.py` and `pipeline/datasets/{mosei,nope}.py`, `hcm.model.ot.sinkhorn`, `hcm.model.runs`."
    assert path_references(text) == {"model/ot.py", "pipeline/datasets/mosei.py", "pipeline/datasets/nope.py"}
    assert not (REPO / "model/ot.py").exists() and (REPO / "pipeline/datasets/mosei.py").exists()
    assert module_reference_exists("hcm.model.ot.sinkhorn")
    assert module_reference_exists("hcm.model.ot") and module_reference_exists("hcm.core")
    assert not module_reference_exists("hcm.model.runs")
    assert not module_reference_exists("hcm.model.ot.no_such_function")
    assert path_references("`~/.cache/clip/RN50.pt`, `configs/datasets/<name>.json`") == set()
    bare = {m.group(0) for m in BARE_FILE.finditer("`test_settings.py`, `test_gone.py`, model/layers.py")}
    assert bare - repository_file_names() == {"test_gone.py"}
    assert hcm_option_problems("`hcm train --epochs 2 --epoch 3`, `hcm cache info X --json -w W`") == [
        "hcm train --epoch"]
    assert hcm_option_problems("run `hcm cache verify DIR --jsn`; hcm picks --nothing") == ["hcm cache verify --jsn"]


def test_a_planted_stale_name_in_a_docstring_fails(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text('"""See training/no_such_file.py and `hcm extract --no-such-option`."""\n')
    text = docstrings(planted)
    assert [p for p in path_references(text) if not (REPO / p).exists()] == ["training/no_such_file.py"]
    assert hcm_option_problems(text) == ["hcm extract --no-such-option"]


BENCHMARKS = sorted((REPO / "benchmarks").glob("bench_*.py"))


def test_there_are_benchmarks() -> None:
    assert BENCHMARKS, "no benchmarks/bench_*.py found"


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_has_a_command_in_results(script: Path) -> None:
    results = (REPO / "benchmarks" / "RESULTS.md").read_text()
    command = re.compile(r"python[\w.]* +benchmarks/%s\b" % re.escape(script.name))
    assert command.search(results), f"benchmarks/RESULTS.md shows no command running benchmarks/{script.name}"


DURATION = re.compile(r"(?<!more than about )\b\d+(?:\.\d+)? s\b|\bminutes?\b")  # not the slow-test threshold


def test_the_quickstart_time_is_stated_once_from_a_measurement() -> None:
    """One place (docs/quickstart.md) says how long the quickstart takes, and each number it gives
    is a measurement recorded in benchmarks/RESULTS.md."""
    stating = []
    for doc in (d for d in DOCS if d.name != "RESULTS.md"):  # RESULTS.md records the measurements themselves
        for paragraph in re.split(r"\n\s*\n", doc.read_text(encoding="utf-8")):
            text = " ".join(paragraph.split())
            if re.search(r"quickstart|make demo", text) and DURATION.search(text) and not text.startswith("|"):
                stating.append((doc.relative_to(REPO).as_posix(), text))
    assert [doc for doc, _ in stating] == ["docs/quickstart.md"], stating
    results = (REPO / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    numbers = re.findall(r"\b(\d+(?:\.\d+)?) s\b", stating[0][1])
    assert numbers and all(re.search(rf"\b{re.escape(n)}(\.\d)? s\b", results) for n in numbers), numbers
