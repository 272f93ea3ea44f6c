"""Checks of command-line values that need hcm's registries or files but no heavy library.

The option callbacks of ``hcm.apps.options`` call them while the command line is parsed, before
any command imports torch, so a wrong dataset or profile name, raw dataset root, search space or
run folder is answered at once (the registries and readers they use load without torch). Each
raises :class:`~hcm.core.errors.UsageError` with what to do; the commands' own functions call the
same checks when used from Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection

from hcm.core.errors import UsageError


def check_extract_dataset(name: str) -> str:
    """``name`` as ``hcm extract --dataset`` takes it: one of the registered dataset readers (any case;
    an unknown name is the registry's usage error, which lists the known ones)."""
    from hcm.pipeline.datasets import get_dataset

    get_dataset(name)
    return name


def check_data_root(dataset: str, root: Path) -> Path:
    """A raw dataset root given with ``--data-root`` must hold ``dataset``'s layout; the message lists
    the expected layout, what is there and where the data comes from."""
    from hcm.pipeline.datasets import get_dataset

    try:
        get_dataset(dataset).check_root(root)
    except OSError as error:  # DatasetRootError (a UsageError too), or an unreadable folder
        raise UsageError(str(error)) from None
    return root


def check_profile(name: str) -> str:
    """An extraction profile's name (``--profile``): one of the registered profiles (the registry loads
    without the encoders)."""
    from hcm.pipeline.profiles import PROFILES

    PROFILES.get(name)
    return name


def check_mmsa_dataset(name: str) -> str:
    """``hcm import mmsa --dataset``: a dataset MMSA distributes feature files for."""
    from hcm.pipeline.importers.mmsa_datasets import mmsa_dataset

    mmsa_dataset(name)
    return name


def check_csd_dataset(name: str) -> str:
    """``hcm import csd --dataset``: a dataset whose standard folds the SDK gives."""
    from hcm.pipeline.importers.csd import csd_dataset

    csd_dataset(name)
    return name


def check_paper_dataset(name: str) -> str:
    """``hcm reproduce --dataset``: a dataset the paper reports numbers for."""
    from hcm.training.paper_results import paper_datasets

    known = paper_datasets()
    if name not in known:
        raise UsageError(f"the paper reports no numbers for {name!r}; --dataset is one of {', '.join(known)}")
    return name


def check_variants(names: list[str]) -> list[str]:
    """``--variants`` of ``hcm reproduce``: at least one, each a variant of Table 4."""
    from hcm.model.config import VARIANTS

    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise UsageError(f"unknown --variants {unknown or '(none)'}; choose from {', '.join(VARIANTS)}")
    return names


def check_search_space(path: Path) -> Path:
    """``hcm tune --space``: a JSON file whose every entry is a search range (the names are checked
    against the dataset's settings once the cache is known)."""
    from hcm.core.files import read_json_object
    from hcm.training.search_space import parse_space

    try:
        parse_space(read_json_object(path, "search space"), str(path))
    except OSError as error:
        raise UsageError(str(error)) from None
    return path


def check_grid(pairs: list[str]) -> list[str]:
    """``hcm tune --grid``: each ``NAME=V1,V2,...``, no name twice."""
    from hcm.training.search_space import grid_space

    grid_space(pairs)
    return pairs


def check_study_kind(grid: Collection[str], space: Path | None) -> None:
    """``hcm tune`` runs a search (``--space``, or the shipped one) or a sweep (``--grid``), not both."""
    if grid and space is not None:
        raise UsageError("--grid and --space are two kinds of study; give one of them")


def check_run_folder(folder: Path) -> Path:
    """A run folder given on the command line (``hcm report``) must hold the run's config.json."""
    from hcm.training.runs import RunPaths

    if not RunPaths(folder).config.is_file():
        raise UsageError(f"{folder} is not a run folder (no config.json); give folders under <workspace>/runs/")
    return folder
