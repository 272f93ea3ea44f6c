"""The clips ``hcm predict`` is given: clip files, folders of clips (their media files, sorted) and
CSV clip lists with the columns ``path,text[,context_before,context_after]``, whose relative paths
start at the CSV's folder and whose context cells hold utterances separated by `` | ``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from hcm.core.errors import UsageError
from hcm.pipeline.clip import ClipInput

MEDIA_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".wav", ".flac", ".mp3", ".m4a"}
CSV_COLUMNS = ("path", "text", "context_before", "context_after")


def gather_inputs(sources: Sequence[Path], text: str | None = None,
                  context: tuple[str, str] = ("", "")) -> list[ClipInput]:
    """The clips named by ``sources``: clip files, folders (their media files, sorted) and CSV files
    (``path,text[,context_before,context_after]``). ``text`` and ``context`` (utterances before and
    after, separated by `` | ``) go with a single clip only."""
    inputs: list[ClipInput] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"folder {source} holds no clip ({', '.join(sorted(MEDIA_SUFFIXES))}); give clip "
                                 f"files, a folder of clips or a CSV path,text")
            inputs += [ClipInput(p) for p in found]
        elif source.suffix.lower() == ".csv":
            inputs += read_clip_csv(source)
        else:
            inputs.append(ClipInput(source))
    if text is not None or any(context):
        if len(sources) != 1 or len(inputs) != 1:
            raise UsageError("--text and --context-before/--context-after go with one clip; for several clips give "
                             "a CSV with the columns path,text[,context_before,context_after]")
        inputs = [ClipInput(inputs[0].clip, text, split_utterances(context[0]), split_utterances(context[1]))]
    return inputs


def read_clip_csv(path: Path) -> list[ClipInput]:
    """Rows ``path,text[,context_before,context_after]``; relative paths start at the CSV's folder and
    a context cell holds utterances separated by `` | `` (as the training text saw its neighbours)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"cannot read clip list {path} ({error}); give a UTF-8 CSV with the header "
                         f"path,text[,context_before,context_after]") from error
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if header[:2] != ["path", "text"] or unknown:
        raise UsageError(f"clip list {path} has the header {header}; it must start with path,text and may add "
                         f"context_before,context_after" + (f" (unknown: {unknown})" if unknown else ""))
    if not rows:
        raise UsageError(f"clip list {path} has a header but no rows")
    return [ClipInput(path.parent / row["path"].strip(), row.get("text") or None,
                      split_utterances(row.get("context_before")), split_utterances(row.get("context_after")))
            for row in rows]


def split_utterances(cell: str | None) -> tuple[str, ...]:
    """``"we went | it started late"`` -> ``("we went", "it started late")``."""
    return tuple(part.strip() for part in (cell or "").split(" | ") if part.strip())
