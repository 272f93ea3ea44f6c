"""``hcm import``: the summary of an import (``hcm.pipeline.importers``) or a clear error, and the exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hcm.cache import CacheError
from hcm.core.errors import report_errors
from hcm.core.workspace import Workspace
from hcm.pipeline.encoders.base import EncoderError
from hcm.pipeline.importers.csd import import_csd
from hcm.pipeline.importers.mmsa import import_mmsa
from hcm.pipeline.profiles import WeightOptions

INTERRUPTED = "interrupted; finished shards are kept and the same command resumes"


def import_mmsa_command(workspace: Workspace, path: Path, dataset: str, quiet: bool = False,
                        weights_dir: Path | None = None, weight_paths: Mapping[str, Any] | None = None,
                        **options: Any) -> int:
    """``hcm import mmsa``: run :func:`~hcm.pipeline.importers.mmsa.import_mmsa`, print the summary or a
    clear error; the exit code. ``weights_dir``/``weight_paths`` as in ``hcm.apps.extract``."""
    weights = WeightOptions(weights_dir, weight_paths or {}, options={"roberta": "--text-model"})  # its option here

    def work() -> None:
        print(import_mmsa(path, dataset, workspace=workspace, progress=not quiet, weights=weights, **options).format())

    return report_errors(work, also=(CacheError, EncoderError), interrupted=INTERRUPTED)


def import_csd_command(workspace: Workspace, folder: Path, dataset: str, quiet: bool = False, **options: Any) -> int:
    """``hcm import csd``: run :func:`~hcm.pipeline.importers.csd.import_csd`, print the summary or a clear
    error; the exit code."""
    def work() -> None:
        print(import_csd(folder, dataset, workspace=workspace, progress=not quiet, **options).format())

    return report_errors(work, also=(CacheError,), interrupted=INTERRUPTED)
