"""``hcm quickstart``: the offline demo from a sample corpus to a tested run (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm.apps import options
from hcm.apps.commands import command


@command("quickstart", "hcm quickstart --quiet")
def quickstart_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", exists=True, dir_okay=False,
        help="Quickstart settings file (default: the shipped configs/quickstart.json)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=options.THREADS_HELP),
) -> None:
    """Sample corpus -> tiny extraction -> train -> test, offline, in minutes (what `make demo` runs)."""
    from hcm.apps.quickstart import quickstart_command as run_quickstart
    from hcm.core.threads import set_threads

    set_threads(threads)
    raise typer.Exit(run_quickstart(ctx.obj, config, progress=not quiet))
