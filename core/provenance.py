"""Where a result came from, recorded in every run's ``config.json`` and every cache's manifest.

``provenance()`` gives the hcm version, the git commit when hcm runs from a checkout (with
``-dirty`` when it has uncommitted changes; ``None`` for an installed copy or without git), the
command line, and the versions of Python and torch (read from the installed package, so torch is
not imported here) and, when given, the device.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from hcm import __version__

#: The repository root of a checkout: the folder that holds the ``hcm`` package's files.
SOURCE = Path(__file__).resolve().parents[1]


def provenance(device: str | None = None) -> dict[str, Any]:
    """``{"hcm_version", "git_commit", "command", "python", "torch"[, "device"]}``."""
    info: dict[str, Any] = {"hcm_version": __version__, "git_commit": git_commit(SOURCE),
                            "command": command_line(), "python": platform.python_version(),
                            "torch": package_version("torch")}
    if device is not None:
        info["device"] = device
    return info


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, ready to paste into a shell: ``hcm train --epochs 5``."""
    args = list(sys.argv if argv is None else argv)
    if args and Path(args[0]).name in ("hcm", "__main__.py", "cli.py"):
        args[0] = "hcm"
    return shlex.join(args)


@functools.lru_cache(maxsize=None)
def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder`` when it is the top of a git checkout, else ``None``
    (asked once per process: every seed of a run records the same)."""
    if not (folder / ".git").exists():
        return None
    try:
        head = _git(folder, "rev-parse", "HEAD")
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if changed else head


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                          check=True)
    return done.stdout.strip()


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
