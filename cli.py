"""The ``hcm`` command line: the root app, its options, and the registration of every command.

Each command is declared (options, defaults, help) in a module of ``hcm.apps.commands`` and added
here with one ``register`` line, in the order of ``hcm --help`` (docs/architecture.md, Adding a
command); its body calls one function of ``hcm.apps``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hcm import __version__
from hcm.apps import options
from hcm.apps.commands import data, group, inside, quickstart, register, studies, training
from hcm.apps.serve.command import serve_command
from hcm.core.threads import passive_waits
from hcm.core.workspace import Workspace

passive_waits()  # torch is not loaded yet: its OpenMP threads will sleep, not spin, when idle

app = typer.Typer(
    cls=options.HcmGroup,
    name="hcm",
    help=(
        "HCMNet for multimodal sentiment analysis.\n\n"
        "Stage one turns a raw dataset (CMU-MOSEI, MELD, IEMOCAP, CMU-MOSI, CH-SIMS or your own clips) "
        "into a feature cache; stage two trains and evaluates HCMNet on that cache. Everything lives under one "
        "workspace (--workdir before or after the command, $HCM_HOME, default ./hcm-work)."
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"max_content_width": 120},  # use a wide terminal; wrap to a narrow one
    rich_markup_mode=None,  # click's plain help wraps at any width; rich's panels cut option names at 80
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
    problem = ctx.obj.problem()
    if problem:
        raise typer.BadParameter(problem, param_hint="'--workdir' / $HCM_HOME")


# The commands, in the order of `hcm --help` (the groups come last there).
register(app, quickstart.quickstart_command)
register(app, data.sample_command)
register(app, data.extract_command)
register(app, training.train_command)
register(app, training.evaluate_command)
register(app, training.runs_command)
register(app, training.predict_command)
register(app, training.ablate_command)
register(app, studies.reproduce_command)
register(app, studies.tune_command)
register(app, inside.explain_command)
register(app, inside.report_command)
register(app, serve_command)

import_group = group(app, "import", "Import other frameworks' feature files as hcm feature caches.")
register(import_group, data.import_mmsa_command)
register(import_group, data.import_csd_command)

cache_group = group(app, "cache", "Inspect and check feature caches (HDF5 shards + manifest.json).")
register(cache_group, data.cache_info_command)
register(cache_group, data.cache_verify_command)
