"""``hcm sample``: write the synthetic corpora (``hcm.pipeline.sample``) and print what each holds."""

from __future__ import annotations

import sys
from pathlib import Path

from hcm.core.errors import EXIT_INTERRUPTED
from hcm.core.workspace import Workspace
from hcm.pipeline.sample import format_summary, sample_into_workspace
from hcm.pipeline.sample.registry import PARTIAL

INTERRUPTED = (f"interrupted; the folder holds part of the corpus (marked by {PARTIAL}): run the same command "
               "again to write it anew")


def sample_command(workspace: Workspace, dataset: str, out: Path | None = None, n: int | None = None,
                   seed: int = 0, faults: bool = False, quiet: bool = False) -> int:
    """``hcm sample``: write one corpus (or ``all``) and print a summary of each; the exit code (0, or
    130 on Ctrl-C).

    A bad dataset name or ``--out`` raises ``ValueError`` / ``FileExistsError`` before anything is
    written; the command line reports them as usage errors.
    """
    try:
        summaries = sample_into_workspace(workspace.data, dataset, out, n, seed, faults, progress=not quiet)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    for summary in summaries:
        print(format_summary(summary))
    return 0
