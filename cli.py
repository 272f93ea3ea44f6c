"""The ``hcm`` command line. Each command parses its options and calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm import __version__
from hcm.cache.workspace import Workspace

app = typer.Typer(
    name="hcm",
    help=(
        "HCMNet for multimodal sentiment analysis.\n\n"
        "Stage one turns a raw dataset (CMU-MOSEI, MELD, IEMOCAP) into a feature cache; "
        "stage two trains and evaluates HCMNet on that cache. Everything lives under one "
        "workspace (--workdir, $HCM_HOME, default ./hcm-work)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hcm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    workdir: Optional[Path] = typer.Option(
        None, "--workdir", "-w", envvar="HCM_HOME",
        help="Workspace folder with data/, features/ and runs/ (default ./hcm-work).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the hcm version and exit."
    ),
) -> None:
    ctx.obj = Workspace.resolve(workdir)
