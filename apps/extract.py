"""``hcm extract``: the summary of an extraction (``hcm.pipeline.extract``) or a clear error, and the exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hcm.core.errors import HcmError, UsageError, report_errors
from hcm.core.workspace import Workspace
from hcm.pipeline.extract import extract
from hcm.pipeline.profiles import WeightOptions

#: What ``hcm extract`` says on Ctrl-C.
INTERRUPTED = "interrupted; complete shards are kept: run the same command again to continue"


def extract_command(workspace: Workspace, splits: str | None = None, quiet: bool = False,
                    weights_dir: Path | None = None, weight_paths: dict[str, Any] | None = None, **options: Any) -> int:
    """``hcm extract``: run :func:`~hcm.pipeline.extract.extract`, print the summary or a clear error, return the
    exit code.

    ``weights_dir`` and ``weight_paths`` (``--weights-dir`` and the per-weight options, name -> path) say where the
    profile's weight files are (:class:`~hcm.pipeline.profiles.WeightOptions`).

    Exit codes: 0 done, 1 stopped (``--strict`` problem, cache of another recipe or other weights),
    2 bad input (dataset root, missing weights or parser, bad option, unreadable or unwritable folder).
    """
    chosen = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    weights = WeightOptions(weights_dir, weight_paths or {})

    def work() -> None:
        try:
            summary = extract(workspace=workspace, splits=chosen, progress=not quiet, weights=weights, **options)
        except HcmError:
            raise
        except OSError as error:  # an unreadable data root, a folder that cannot be written
            where = f" ({error.filename})" if error.filename else ""
            raise UsageError(f"{error.strerror or error}{where}. Check that the path exists and this user may read "
                             f"(data root) or write (workspace, --out) it.") from error
        except ValueError as error:  # a reader's or loader's message about the user's input
            raise UsageError(str(error)) from error
        print(summary.format())

    return report_errors(work, interrupted=INTERRUPTED)
