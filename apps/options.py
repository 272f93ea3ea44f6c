"""What the ``hcm`` command line declares beside its commands: the help's command classes, the
choice enums, the option checks and the shared help texts (the commands are in ``hcm.apps.commands``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from hcm.core.configs import parse_assignments

THREADS_HELP = "CPU threads for torch (default: the CPUs this process may use: affinity and cgroup quota)."
FROM_CONFIG = "dataset config"  # what a train setting left unset means
WORKDIR_FLAGS = ("-w", "--workdir")
T = TypeVar("T")


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

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:
        """Each command's first sentence, wrapped (click would cut it with "..." at 80 columns)."""
        rows = [(name, command.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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


class CsdAlign(str, Enum):
    """How ``hcm import csd`` cuts the sequences (docs/datasets.md, CMU-MultimodalSDK files)."""

    none = "none"
    words = "words"


def checked(check: Callable[[T], T], value: T) -> T:
    """``check(value)`` (one of ``hcm.apps.arguments``), its usage error as the command line's."""
    try:
        return check(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def extract_dataset(value: str) -> str:
    """A dataset ``hcm extract`` reads, checked before torch loads."""
    from hcm.apps.arguments import check_extract_dataset

    return checked(check_extract_dataset, value)


def profile(value: Optional[str]) -> Optional[str]:
    """``--profile``: a registered extraction profile (paper, tiny), checked before torch loads."""
    from hcm.apps.arguments import check_profile

    return None if value is None else checked(check_profile, value)


def mmsa_dataset(value: str) -> str:
    """``hcm import mmsa --dataset``: mosi, mosei or sims."""
    from hcm.apps.arguments import check_mmsa_dataset

    return checked(check_mmsa_dataset, value)


def csd_dataset(value: str) -> str:
    """``hcm import csd --dataset``: mosi or mosei."""
    from hcm.apps.arguments import check_csd_dataset

    return checked(check_csd_dataset, value)


def paper_dataset(value: Optional[str]) -> Optional[str]:
    """``hcm reproduce --dataset`` in lower case: a dataset with numbers in the paper."""
    from hcm.apps.arguments import check_paper_dataset

    return None if value is None else checked(check_paper_dataset, value.lower())


def names(value: str) -> list[str]:
    """A comma list as its non-empty, stripped names (``"a, b,"`` -> ``["a", "b"]``)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def variant_list(value: str) -> list[str]:
    """``--variants`` of ``hcm reproduce``: a comma list of Table 4 variants, as a list."""
    from hcm.apps.arguments import check_variants

    return checked(check_variants, names(value))


def search_space(value: Optional[Path]) -> Optional[Path]:
    """``hcm tune --space``: a readable JSON search space whose entries are ranges or lists."""
    from hcm.apps.arguments import check_search_space

    return None if value is None else checked(check_search_space, value)


def grid_points(values: list[str]) -> list[str]:
    """``hcm tune --grid``: each ``NAME=V1,V2,...``."""
    from hcm.apps.arguments import check_grid

    return checked(check_grid, values)


def one_study_kind(grid: list[str], space: Optional[Path]) -> None:
    """``hcm tune``: --grid or --space, not both (two options, so checked in the command's body)."""
    from hcm.apps.arguments import check_study_kind

    try:
        check_study_kind(grid, space)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def run_folders(values: list[Path]) -> list[Path]:
    """Run folders given as arguments (``hcm report``): each holds its run's config.json."""
    from hcm.apps.arguments import check_run_folder

    return [checked(check_run_folder, value) for value in values]


def data_root(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    """A given raw dataset root must hold its dataset's layout (checked before torch loads)."""
    from hcm.apps.arguments import check_data_root

    dataset = ctx.params.get("dataset")
    if value is not None and dataset:
        checked(lambda root: check_data_root(dataset, root), value)
    return value


def positive(value: Optional[float]) -> Optional[float]:
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be greater than 0, got {value}")
    return value


# The option callbacks below parse what was typed before any work starts and return the parsed
# value, which is what the command receives (its annotation names what the user types).


def int_list(value: Optional[str]) -> Optional[list[int]]:
    """A comma list of integers (``0,1,2``) as a list; None when the option is not given."""
    if value is None:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma list of integers (e.g. 0,1,2)") from None


def seed_list(value: str) -> list[int]:
    """A comma list of at least one seed."""
    seeds = int_list(value)
    if not seeds:
        raise typer.BadParameter("give at least one seed, e.g. 1111")
    return seeds


def assignments(pairs: list[str]) -> list[tuple[str, Any]]:
    """``--set`` values as (setting, value) pairs in the order given (``dict()`` of them is what
    ``parse_assignments`` returns; a list, because typer makes a repeatable option's value a list)."""
    try:
        return list(parse_assignments(pairs).items())
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def example(*lines: str) -> dict[str, object]:
    """Options for ``app.command``: the help's class and an example at its end."""
    return {"cls": HcmCommand, "epilog": "Example:  " + "  |  ".join(lines)}


class Pruner(str, Enum):
    """Pruners of ``hcm tune``."""

    median = "median"
    hyperband = "hyperband"
    none = "none"


def modality_sets(values: list[str]) -> list[str]:
    """``--missing``: text, video, audio or pairs joined by '+' (``video+audio``), or ``all``."""
    for value in values:
        names = [part.strip() for part in value.split("+")]
        if value != "all" and (not 1 <= len(names) <= 2 or any(n not in ("text", "video", "audio") for n in names)):
            raise typer.BadParameter(f"{value!r}: give text, video or audio, a pair such as video+audio, or all")
    if "all" in values and len(values) > 1:
        raise typer.BadParameter("'all' already holds every modality and pair; give it alone")
    return values


def noise_levels(value: Optional[str]) -> list[float]:
    """``--noise``: a comma list of levels >= 0 (``0.1,0.5,1``); none when not given."""
    if not value:
        return []
    try:
        levels = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma list of numbers (e.g. 0.1,0.5,1)") from None
    if not levels or any(not 0 <= v < 1e6 for v in levels):
        raise typer.BadParameter(f"{value!r}: noise levels are numbers >= 0 (units of each feature's spread)")
    return levels
