"""What the ``hcm`` command line declares beside its commands: the help's command classes, the
choice enums, the option checks and the shared help texts (``hcm.cli`` holds only the commands)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from hcm.core.configs import parse_assignments

THREADS_HELP = "CPU threads for torch (default: the CPUs this process may use: affinity and cgroup quota)."
FROM_CONFIG = "dataset config"  # what a train setting left unset means
WORKDIR_FLAGS = ("-w", "--workdir")


def _plain_flags(params: list[Any]) -> list[Any]:
    """Flags take no value: show no ``<bool>`` type beside them in the help."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class HcmCommand(TyperCommand):
    """A command whose help shows flags without a type."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class HcmGroup(TyperGroup):
    """The root group: ``-w/--workdir`` is accepted after the subcommand too (moved in front)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _plain_flags(super().get_params(ctx))

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, workdir_first(args))


def workdir_first(args: list[str]) -> list[str]:
    """``["train", "-w", "W", "--epochs", "2"]`` -> ``["-w", "W", "train", "--epochs", "2"]``."""
    front: list[str] = []
    rest: list[str] = []
    i, seen_command = 0, False
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if seen_command and arg in WORKDIR_FLAGS and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        if seen_command and arg.startswith("--workdir="):
            front.append(arg)
        else:
            seen_command = seen_command or not arg.startswith("-")
            rest.append(arg)
        i += 1
    return front + rest


class Split(str, Enum):
    """The splits ``hcm evaluate`` scores (the model was fitted on train)."""

    valid = "valid"
    test = "test"


class ModelSize(str, Enum):
    """Model sizes of ``hcm train`` (configs/model_sizes.json)."""

    auto = "auto"
    paper = "paper"
    small = "small"


class AlignedRows(str, Enum):
    trim = "trim"
    all = "all"


class Precision(str, Enum):
    """The encoders' arithmetic in ``hcm extract`` and ``hcm predict`` (docs/extraction.md, Precision)."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


def positive(value: Optional[float]) -> Optional[float]:
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be greater than 0, got {value}")
    return value


def int_list(value: Optional[str]) -> Optional[str]:
    """Check a comma list of integers (``0,1,2``) before any work starts."""
    if value:
        try:
            [int(s) for s in value.split(",") if s.strip()]
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a comma list of integers (e.g. 0,1,2)") from None
    return value


def assignments(pairs: list[str]) -> list[str]:
    try:
        parse_assignments(pairs)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return pairs


def example(*lines: str) -> dict[str, object]:
    """Options for ``app.command``: the help's class and an example at its end."""
    return {"cls": HcmCommand, "epilog": "Example:  " + "  |  ".join(lines)}


def seed_list(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma list of integers (e.g. 1111,1112,1113)") from None
    if not seeds:
        raise typer.BadParameter("give at least one seed, e.g. 1111")
    return seeds


class Pruner(str, Enum):
    """Pruners of ``hcm tune``."""

    median = "median"
    hyperband = "hyperband"
    none = "none"
