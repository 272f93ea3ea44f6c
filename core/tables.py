"""Tables for people: every table hcm prints fits the terminal (down to 80 columns) without cutting a number.

Rich shrinks columns that do not fit and cuts their cells with "…", numbers included. Here a number
column (right-justified) never shrinks below its widest cell or header, a text column folds its
long words onto more lines instead of cutting them, and when the number columns alone are wider
than the terminal, they are stacked: the table is printed in parts one above the other, each part
repeating the first ``keep`` (label) columns, and a note says the columns continue below.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: The narrowest a folding text column is planned at (rich may fold it further).
TEXT_MIN = 16
#: The label columns repeated in every part are planned at up to this width (run names unfolded).
KEPT_MAX = 32
CONTINUED = "the columns continue in the table below"


def print_table(console: Console, table: Table, keep: int = 1) -> None:
    """Print ``table`` on ``console`` as one table, or stacked parts when it is wider than the console;
    a caption goes on the lines below its part, wrapped to the console (not to the part's width)."""
    for part in fit_table(table, console.width, keep):
        note, part.caption = part.caption, None
        console.print(part)
        if note:
            console.print(note, style="dim", highlight=False)


def fit_table(table: Table, width: int, keep: int = 1) -> list[Table]:
    """``table`` as tables of at most ``width`` columns each, no number cut (see the module docstring)."""
    keep = min(keep, len(table.columns))
    needs = [_column_need(table, index, KEPT_MAX if index < keep else TEXT_MIN) for index in range(len(table.columns))]
    parts: list[list[int]] = []
    current: list[int] = []
    for index in range(keep, len(table.columns)):
        if current and _width(table, [*range(keep), *current, index], needs) > width:
            parts.append(current)
            current = []
        current.append(index)
    parts.append(current)
    if len(parts) == 1:
        return [_with_columns(table, list(range(len(table.columns))), first=True, last=True)]
    return [_with_columns(table, [*range(keep), *part], first=n == 0, last=n == len(parts) - 1)
            for n, part in enumerate(parts)]


def _column_need(table: Table, index: int, text_width: int) -> int:
    """The width a column needs, padding excluded: a number column its widest cell, a text column
    at most ``text_width`` (it folds beyond)."""
    column = table.columns[index]
    widest = max([_cell_width(column.header), *(_cell_width(cell) for cell in column._cells)], default=1)
    if column.justify == "right":
        column.no_wrap = True
        column.min_width = max(column.min_width or 0, widest)
        return widest
    column.overflow = "fold"
    column.no_wrap = False
    return min(widest, text_width)


def _cell_width(cell: object) -> int:
    if isinstance(cell, Text):
        return max((cell_len(line) for line in cell.plain.splitlines()), default=0)
    if isinstance(cell, str):
        return max((cell_len(line) for line in Text.from_markup(cell).plain.splitlines()), default=0)
    return 1


def _width(table: Table, indices: list[int], needs: list[int]) -> int:
    """The narrowest ``table`` with these columns prints at: cells, padding, vertical lines."""
    left, right = table.padding[3], table.padding[1]
    padding = (left + right) * len(indices)
    lines = 0 if table.box is None else (len(indices) - 1) + (2 if table.show_edge else 0)
    return sum(needs[i] for i in indices) + padding + lines


def _with_columns(table: Table, indices: list[int], first: bool, last: bool) -> Table:
    """A copy of ``table`` with the columns ``indices``; the title goes on the first part, the
    caption on the last, and every part but the last says that more columns follow."""
    part = copy.copy(table)
    part.columns = [dataclasses.replace(table.columns[i], _index=n) for n, i in enumerate(indices)]
    part.rows = list(table.rows)
    if not first:
        part.title = None
    if not last:
        part.caption = CONTINUED
    return part


#: The one convention of every metrics table (evaluate, runs, ablate, quickstart), said in its caption.
UNITS = "MAE and Corr as decimals; accuracies and F1 in %"
DECIMAL_METRICS = ("mae", "corr")


def metric_cell(name: str, value: Any) -> str:
    """A metric as a table cell: MAE/Corr as decimals (3 places), every other metric as a percentage
    (2 places); ``{"mean", "std"[, "n"]}`` (a seed summary) as ``mean ± std``; missing as ``-``."""
    scale, digits = (1.0, 3) if name.removeprefix("valid_").removeprefix("test_") in DECIMAL_METRICS else (100.0, 2)
    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        if not _finite(mean):
            return "-"
        if value.get("n", 2) > 1 and _finite(std):
            return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
        return f"{mean * scale:.{digits}f}"
    if not _finite(value):
        return "-"
    return f"{value * scale:.{digits}f}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
