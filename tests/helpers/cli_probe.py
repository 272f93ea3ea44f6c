"""Run several ``hcm`` command lines in one fresh interpreter and report their exit codes and which
heavy libraries (torch, transformers) were imported by the end: the help and the argument checks
must answer without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcm

PROBE = """
import json, sys
from hcm.cli import app
codes = []
for args in json.loads(sys.argv[1]):
    try:
        app(args, prog_name="hcm")
    except SystemExit as stop:
        codes.append(stop.code)
print(json.dumps({"codes": codes, "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def probe_commands(calls: list[list[str]], workdir: Path, timeout: float) -> tuple[dict[str, Any], str]:
    """``({"codes": [...], "heavy": [...]}, stderr)`` of running ``calls`` with ``HCM_HOME=workdir``."""
    env = {**os.environ, "PYTHONPATH": str(Path(hcm.__file__).parent.parent), "HCM_HOME": str(workdir)}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(calls)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def command_paths(groups: bool = False) -> list[list[str]]:
    """Every command of ``hcm`` as its words (``["train"]``, ``["cache", "info"]``), read from the
    command tree itself so that a new command is checked too; ``groups`` adds ``[]`` and the groups."""
    import click
    import typer.main

    from hcm.cli import app

    found: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        subcommands = getattr(command, "commands", {})
        if not subcommands or groups:
            found.append(path)
        for name in sorted(subcommands):
            walk(subcommands[name], [*path, name])

    walk(typer.main.get_command(app), [])
    return found
