"""A split given by the user as a file (``hcm extract --split-file FILE.csv``), for every dataset.

The file is a UTF-8 CSV whose first line is the header ``id,split`` (further columns are
ignored); each row puts one item, named by its hcm id (the ``id`` of the cache items and of
``predictions.csv``: ``<video_id>$_$<clip_id>`` for MOSEI, ``train_dia0_utt0`` for MELD,
``Ses01F_impro01_F000`` for IEMOCAP), into ``train``, ``valid`` or ``test``.

The file replaces the adapter's own split for the items it lists. Dataset items it does not
list are left out of the extraction and counted (logged, in the summary and in the recipe).
The file is refused as a whole, with the offending values and lines, when it lacks the header,
lists an id twice, names another split, holds no row, or lists ids the dataset does not have.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hcm.cache.manifest import sha256_file
from hcm.core.errors import UsageError
from hcm.pipeline.datasets.base import SPLITS, AnnotationError, Utterance, read_csv_rows

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ("id", "split")
SHOWN = 5  # offending values quoted in an error message


def assign_by_group(sizes: Sequence[int], shares: Mapping[str, float]) -> list[str]:
    """The split of each group (a video of ``sizes[i]`` clips), in the given order: each goes to the
    split furthest below its share of the clips so far (ties to the first of ``shares``); the last
    groups go to splits still empty, so that every split gets one when there are enough groups."""
    assigned = dict.fromkeys(shares, 0)
    chosen = []
    for index, size in enumerate(sizes):
        total = sum(assigned.values()) + size
        empty = [split for split in shares if assigned[split] == 0]
        if len(sizes) - index <= len(empty):
            split = empty[0]
        else:
            split = max(shares, key=lambda s: shares[s] * total - assigned[s])
        assigned[split] += size
        chosen.append(split)
    return chosen


class SplitFileError(UsageError):
    """A split file that cannot be used; the message names the file, the values and the fix."""


def _some(values: list[str]) -> str:
    """The first few of ``values`` for a message, with the count of the rest."""
    shown = ", ".join(values[:SHOWN])
    return shown + (f" ... and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


@dataclass(frozen=True)
class SplitFile:
    """The split of each id listed in a split file, and the file's content hash."""

    path: Path
    splits: dict[str, str]  # id -> train / valid / test
    sha256: str

    @classmethod
    def read(cls, path: str | Path) -> "SplitFile":
        """Read and check ``path``; raises :class:`SplitFileError` naming every kind of problem."""
        path = Path(path)
        if not path.is_file():
            raise SplitFileError(f"split file {path} does not exist; give a CSV with the header `id,split`")
        try:
            rows = list(read_csv_rows(path, SPLIT_COLUMNS))
        except AnnotationError as err:
            raise SplitFileError(f"split file {err} Its first line must be the header `id,split`.") from err
        splits: dict[str, str] = {}
        lines: dict[str, list[int]] = {}
        problems: list[str] = []
        for line, row, _ in rows:
            item, split = (row.get("id") or "").strip(), (row.get("split") or "").strip()
            if not item:
                problems.append(f"line {line}: empty id")
            elif split not in SPLITS:
                problems.append(f"line {line}: split {split!r} for {item!r} is not one of {', '.join(SPLITS)}")
            else:
                splits.setdefault(item, split)
                lines.setdefault(item, []).append(line)
        repeated = [f"{item!r} (lines {', '.join(map(str, at))})" for item, at in lines.items() if len(at) > 1]
        if repeated:
            problems.append(f"{len(repeated)} id(s) listed more than once: {_some(repeated)}")
        if not rows:
            problems.append("no rows after the header")
        if problems:
            raise SplitFileError(f"split file {path}: {_some(problems)}. Fix the file and run again.")
        return cls(path, splits, sha256_file(path))

    def assign(self, items: list[Utterance], dataset: str) -> tuple[list[Utterance], int]:
        """The items the file lists, each with the file's split, and how many items it leaves out.

        Raises :class:`SplitFileError` when the file lists ids that ``items`` do not hold.
        """
        known = {item.id for item in items}
        unknown = [item for item in self.splits if item not in known]
        if unknown:
            examples = ", ".join(repr(item.id) for item in items[:3]) or "none: the dataset lists no item"
            raise SplitFileError(
                f"split file {self.path}: {len(unknown)} of its {len(self.splits)} ids are not items of "
                f"{dataset}: {_some([repr(item) for item in unknown])}. {dataset} ids look like {examples} "
                f"(the `id` of cache items and predictions.csv); rows the adapter skipped as malformed "
                f"are logged above."
            )
        kept = [replace(item, split=self.splits[item.id]) for item in items if item.id in self.splits]
        # rows the reader rejected are failures of their own, not items the file leaves out
        left_out = sum(1 for item in items if item.id not in self.splits and item.dropped is None)
        sizes = Counter(item.split for item in kept)
        log.info("split file %s: %s; %d item(s) of %s not in the file are left out", self.path,
                 ", ".join(f"{split} {sizes[split]}" for split in SPLITS), left_out, dataset)
        return kept, left_out

    def recipe(self, left_out: int) -> dict:
        """What the cache's recipe records of this file (its content, not its path)."""
        return {"sha256": self.sha256, "ids": len(self.splits), "left_out": left_out}
