"""Checks of command-line values that need stage one's registries but no heavy library.

``hcm.cli`` calls them while it parses, before any command imports torch, so a wrong dataset
name or raw dataset root is answered at once (the dataset readers' registry loads without torch).
Each raises :class:`~hcm.core.errors.UsageError` with what to do.
"""

from __future__ import annotations

from pathlib import Path

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
