"""The progress bars of every long job: one factory, so they all look alike.

    with progress_bar(enabled, "loss {task.fields[loss]}") as bar:
        task = bar.add_task("epoch 1", total=n, loss="-")
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(enabled: bool, *fields: str, eta: bool = False, stderr: bool = False) -> Progress:
    """A rich progress display: description, bar, done/total, then ``fields`` (rich format strings
    over the task's fields, e.g. ``"{task.fields[rate]}"``), elapsed time and optionally the ETA.

    ``enabled=False`` gives a silent display (quiet mode, non-zero ranks); ``stderr=True`` keeps
    stdout for the command's output (e.g. JSON).
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if eta:
        columns.append(TaskProgressColumn())
    columns += [TextColumn(f) for f in fields]
    columns.append(TimeElapsedColumn())
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, disable=not enabled, console=Console(stderr=True) if stderr else None)
