"""The dataset adapter contract and its registry.

An adapter reads one raw dataset layout and lists its utterances: ids, split, labels, raw
transcript, group (video or dialogue), position in the group, the text of up to two former
and two latter utterances of the group, and references to the video and audio clips.

Adapters never open media: a missing or broken clip is listed like any other and fails later,
at decode time, with a :class:`hcm.pipeline.media.MediaError` the extraction records. Malformed
annotation rows are skipped with a warning naming the file and line.

Order of :meth:`DatasetAdapter.utterances`: split (train, valid, test), then group (each
adapter documents how groups sort), then position inside the group. A split file
(``hcm.pipeline.datasets.splits``) replaces any adapter's splits in :meth:`DatasetAdapter.select`.
"""

from __future__ import annotations

import csv
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hcm.cache.workspace import Workspace
from hcm.pipeline.media import MediaRef

if TYPE_CHECKING:
    from hcm.pipeline.datasets.splits import SplitFile

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
CONTEXT_TURNS = 2  # former and latter utterances given as text context (the paper's 2 + 2)


class DatasetRootError(FileNotFoundError):
    """A dataset root that does not hold the expected layout."""

    def __init__(
        self,
        dataset: str,
        root: Path,
        expected: Iterable[str],
        source: str,
        missing: Iterable[str] = (),
    ) -> None:
        self.root = Path(root)
        missing = list(missing)
        if self.root.is_dir():
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            found = ", ".join(entries[:20]) + (" ..." if len(entries) > 20 else "") or "nothing"
        else:
            found = "the folder does not exist"
        lines = [
            f"{dataset}: {self.root} does not hold the expected layout.",
            "Expected:",
            *(f"  {self.root}/{item}" for item in expected),
            *([f"Missing: {', '.join(missing)}"] if missing else []),
            f"Found: {found}",
            f"Where the data comes from: {source}",
        ]
        super().__init__("\n".join(lines))


@dataclass
class Utterance:
    """One utterance of a dataset, as stage one reads it."""

    id: str
    split: str
    label: float | int
    labels: dict
    text: str
    group: str
    position: int
    video: MediaRef | None
    audio: MediaRef | None
    context_before: list[str] = field(default_factory=list)
    context_after: list[str] = field(default_factory=list)


@dataclass
class Selection:
    """The utterances an extraction plans, and how many a split file left out."""

    utterances: list[Utterance]
    left_out: int = 0


class DatasetAdapter(ABC):
    """Reads one raw dataset layout. Subclasses set the class attributes and the two readers."""

    name: str
    task: str  # "regression" or "classification"
    classes: list[str] | None = None
    source: str = ""  # where users obtain the raw data, quoted in DatasetRootError

    def default_root(self, workspace: Workspace) -> Path:
        """Where the raw data lives when no root is given: ``<workspace>/data/<name>``."""
        return workspace.data_dir(self.name)

    @abstractmethod
    def check_root(self, root: Path) -> None:
        """Raise :class:`DatasetRootError` unless ``root`` holds this dataset's layout."""

    @abstractmethod
    def read(self, root: Path) -> list[Utterance]:
        """Every utterance of the dataset, in any order, with context already attached."""

    def select(self, root: Path, splits: list[str] | None = None,
               split_file: SplitFile | None = None) -> Selection:
        """The utterances of ``splits`` ordered by split, group and position.

        With ``split_file`` each utterance takes the file's split and the ones the file does
        not list are left out (counted in ``Selection.left_out``); without it the adapter's own
        split holds.
        """
        root = Path(root)
        self.check_root(root)
        wanted = _check_splits(splits)
        items, left_out = self.read(root), 0
        if split_file is not None:
            items, left_out = split_file.assign(items, self.name)
        items = [u for u in items if u.split in wanted]
        items.sort(key=lambda u: (SPLITS.index(u.split), self.group_key(u.group), u.position))
        return Selection(items, left_out)

    def utterances(self, root: Path, splits: list[str] | None = None,
                   split_file: SplitFile | None = None) -> list[Utterance]:
        """The utterances of :meth:`select`."""
        return self.select(root, splits, split_file).utterances

    def group_key(self, group: str) -> tuple:
        """Sort key of a group id; plain string order unless an adapter says otherwise."""
        return (group,)


def _check_splits(splits: list[str] | None) -> tuple[str, ...]:
    if splits is None:
        return SPLITS
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {list(SPLITS)}")
    return tuple(splits)


def context_window(texts: list[str], index: int) -> tuple[list[str], list[str]]:
    """The 2 texts before and the 2 after ``texts[index]`` (fewer at the edges of the group)."""
    return texts[max(index - CONTEXT_TURNS, 0):index], texts[index + 1:index + 1 + CONTEXT_TURNS]


def attach_context(group: list[Utterance]) -> None:
    """Number one group's utterances (already in order) and give each its neighbours' texts."""
    texts = [u.text for u in group]
    for index, utterance in enumerate(group):
        utterance.position = index
        utterance.context_before, utterance.context_after = context_window(texts, index)


def natural_key(value: str) -> tuple:
    """Numeric order for ids that are all digits, string order otherwise (numbers sort first)."""
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


def require_paths(
    dataset: str, root: Path, required: list[str], source: str, layout: list[str] | None = None
) -> None:
    """Raise :class:`DatasetRootError` unless every relative path in ``required`` exists.

    ``layout`` describes the expected layout in the message (default: ``required``); each
    missing path is reported by its shortest missing prefix (``Session1/`` rather than every
    folder below it).
    """
    missing: list[str] = []
    for item in required:
        parts = item.rstrip("/").split("/")
        for depth in range(1, len(parts) + 1):
            if not (Path(root).joinpath(*parts[:depth])).exists():
                folder = depth < len(parts) or item.endswith("/")
                shown = "/".join(parts[:depth]) + ("/" if folder else "")
                if shown not in missing:
                    missing.append(shown)
                break
    if missing:
        raise DatasetRootError(dataset, root, layout or required, source, missing)


_REGISTRY: dict[str, type[DatasetAdapter]] = {}


def register_dataset(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Class decorator: make an adapter available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"dataset {cls.name!r} is already registered by {_REGISTRY[cls.name]}")
    _REGISTRY[cls.name] = cls
    return cls


def get_dataset(name: str) -> DatasetAdapter:
    """A fresh adapter for ``name``; unknown names list the known ones."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        known = ", ".join(dataset_names())
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


def dataset_names() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_REGISTRY)


def warn_row(path: Path, line: int, problem: str) -> None:
    """Log a skipped malformed annotation row."""
    log.warning("%s line %d: %s; row skipped", path, line, problem)


class AnnotationError(ValueError):
    """An annotation file that cannot be read at all (e.g. a CSV without the expected columns)."""


def read_csv_rows(path: Path, columns: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a UTF-8 CSV as ``(line number, {column: raw string})``; nothing parsed as numbers.

    Bytes that are not UTF-8 become U+FFFD instead of failing; a byte-order mark is dropped.
    Text is otherwise kept exactly as written (mojibake included). Raises
    :class:`AnnotationError` when a required column is absent.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in columns if name not in header]
        if missing:
            raise AnnotationError(
                f"{path}: missing column(s) {missing}; found {header}. "
                f"Expected the columns {list(columns)}."
            )
        reader.fieldnames = header
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as err:
            raise AnnotationError(
                f"{path} near line {reader.line_num + 1}: not readable as CSV ({err}); "
                "fix or remove that row"
            ) from err
