"""Markdown and LaTeX tables that fit a terminal: a table wider than ``width`` is cut between
columns (never inside a number) into several tables that each repeat the first column."""

from __future__ import annotations

import re
from collections.abc import Sequence

WIDTH = 80
NUMERIC = re.compile(r"^[-+\d.,eE±\[\] %()]*$")  # numbers, intervals, mean ± std; right-aligned


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
    return "| " + " | ".join(padded) + " |"


def _rule(widths: Sequence[int], right: Sequence[bool]) -> str:
    return "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"


def _chunks(widths: list[int], width: int) -> list[list[int]]:
    """Column indices of each part: column 0 in every part, then as many as fit."""
    parts, current, used = [], [0], widths[0] + 4
    for index in range(1, len(widths)):
        if len(current) > 1 and used + widths[index] + 3 > width:
            parts.append(current)
            current, used = [0], widths[0] + 4
        current.append(index)
        used += widths[index] + 3
    parts.append(current)
    return parts


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int = WIDTH) -> str:
    """Aligned Markdown table(s): columns of numbers right, text left, the first column always
    left; split between columns where the whole would be wider than ``width``."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    right = [i > 0 and all(NUMERIC.match(r[i]) for r in rows) for i in range(len(headers))]
    blocks = []
    for part in _chunks(widths, width):
        w, r = [widths[i] for i in part], [right[i] for i in part]
        lines = [_line([headers[i] for i in part], w, r), _rule(w, r)]
        lines += [_line([row[i] for i in part], w, r) for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


LATEX_SPECIAL = {"%": r"\%", "&": r"\&", "_": r"\_", "#": r"\#", "±": r"$\pm$", "↑": r"$\uparrow$",
                 "↓": r"$\downarrow$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


def latex_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    """A booktabs ``table`` environment with the same cells (``\\usepackage{booktabs}``)."""
    spec = "l" + "r" * (len(headers) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
