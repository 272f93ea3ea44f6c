"""The dataset adapter contract and its registry.

An adapter reads one raw dataset layout and lists its utterances: ids, split, labels, raw
transcript, group (video or dialogue), position in the group, the text of up to two former
and two latter utterances of the group, and references to the video and audio clips.

Adapters never open media: a missing or broken clip is listed like any other and is masked
later, at decode time, with the :class:`hcm.pipeline.media.MediaError` reason the extraction
records. Every labelled annotation row is accounted for: a row that cannot become an item
(malformed id, invalid or excluded label, unknown split, duplicate, missing label file) is an
utterance with ``dropped = (reason, detail)``, logged with its file and line, which
``utterances(..., rejected=True)`` lists and the extraction records as a failure. Text whose
bytes were not UTF-8 is kept with U+FFFD and noted in ``notes["text_repair"]``.

Order of :meth:`DatasetAdapter.utterances`: split (train, valid, test), then group (each
adapter documents how groups sort), then position inside the group. A split file
(``hcm.pipeline.datasets.splits``) replaces any adapter's splits in :meth:`DatasetAdapter.select`.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hcm.core.errors import UsageError
from hcm.core.registry import Registry
from hcm.core.workspace import Workspace
from hcm.pipeline.media import MediaRef

if TYPE_CHECKING:
    from hcm.pipeline.datasets.splits import SplitFile

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
CONTEXT_TURNS = 2  # former and latter utterances given as text context (the paper's 2 + 2)

# Why an annotation row is not an item (``Utterance.dropped[0]``, the failure's reason in the cache).
INVALID_ID = "invalid id"
INVALID_LABEL = "invalid label"
EXCLUDED_CLASS = "label outside the classes"  # by the dataset's definition: --strict does not stop on it
UNKNOWN_SPLIT = "unknown split"
DUPLICATE_ROW = "duplicate row"
MISSING_LABEL_FILE = "label file missing"


class DatasetRootError(UsageError, FileNotFoundError):
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
    notes: dict[str, str] = field(default_factory=dict)  # remarks kept with the item (text_repair)
    masked: dict[str, tuple[str, str]] = field(default_factory=dict)  # modality -> (reason, detail) known from reading
    dropped: tuple[str, str] | None = None  # (reason, detail): a row that cannot become an item


def rejected_row(item_id: str, split: str, reason: str, detail: str, group: str = "", position: int = 0) -> Utterance:
    """An annotation row that cannot become an item, logged; the extraction records it as a failure."""
    log.log(logging.INFO if reason == EXCLUDED_CLASS else logging.WARNING, "%s; row not extracted (%s)", detail, reason)
    return Utterance(id=item_id, split=split, label=0, labels={}, text="", group=group, position=position,
                     video=None, audio=None, dropped=(reason, detail))


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
    language: str = "en"  # language of the transcripts (ISO 639-1)
    spacy_model: str = ""  # dependency parser for that language ("": the profile's English default)
    text_model: str = ""  # the paper profile's text model for that language ("": the profile's own)

    def configure(self, options: Mapping[str, Any], root: Path | None = None) -> None:
        """Take the dataset options of ``hcm extract`` (``label_range``, ``classes``, ``split_seed``)
        for the corpus at ``root``.

        Only datasets whose facts come from the data (``custom``) take any; the others refuse them.
        """
        given = sorted(name for name, value in options.items() if value is not None)
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{flags}: only --dataset custom takes these; {self.name} has fixed facts "
                             f"(configs/datasets/{self.name}.json)")

    def recipe(self) -> dict[str, Any]:
        """What the cache recipe records of the dataset beyond its name (facts read from the data,
        a split made by hcm); nothing for datasets whose facts are shipped."""
        return {}

    def report(self) -> list[str]:
        """Remarks of the last :meth:`read` for the extraction summary (e.g. split sizes that
        differ from the published ones)."""
        return []

    def default_root(self, workspace: Workspace) -> Path:
        """Where the raw data lives when no root is given: ``<workspace>/data/<name>``; when that is
        absent and ``hcm sample --dataset <name>`` wrote ``<workspace>/data/sample-<name>``, the sample."""
        from hcm.pipeline.sample.registry import MARKER  # here: the sample package loads every corpus generator

        root = workspace.data_dir(self.name)
        sample = workspace.data / f"sample-{self.name}"
        if not root.exists() and (sample / MARKER).is_file():
            log.warning("no %s dataset at %s; using the sample corpus %s (give --data-root for the real one)",
                        self.name, root, sample)
            return sample
        return root

    @abstractmethod
    def check_root(self, root: Path) -> None:
        """Raise :class:`DatasetRootError` unless ``root`` holds this dataset's layout."""

    @abstractmethod
    def read(self, root: Path) -> list[Utterance]:
        """Every utterance of the dataset, in any order, with context already attached."""

    def select(self, root: Path, splits: list[str] | None = None, split_file: SplitFile | None = None,
               rejected: bool = False) -> Selection:
        """The utterances of ``splits`` ordered by split, group and position.

        With ``split_file`` each utterance takes the file's split and the ones the file does
        not list are left out (counted in ``Selection.left_out``); without it the adapter's own
        split holds. With ``rejected``, the rows that cannot become items (``dropped`` set) are
        listed too, in their split (rows of no known split last, and only when every split is wanted).
        """
        root = Path(root)
        self.check_root(root)
        wanted = _check_splits(splits) + (("",) if splits is None else ())
        items, left_out = self.read(root), 0
        if split_file is not None:
            items, left_out = split_file.assign(items, self.name)
        items = [u for u in items if u.split in wanted and (rejected or u.dropped is None)]
        items.sort(key=lambda u: (SPLITS.index(u.split) if u.split in SPLITS else len(SPLITS),
                                  self.group_key(u.group), u.position))
        return Selection(items, left_out)

    def utterances(self, root: Path, splits: list[str] | None = None, split_file: SplitFile | None = None,
                   rejected: bool = False) -> list[Utterance]:
        """The utterances of :meth:`select`."""
        return self.select(root, splits, split_file, rejected).utterances

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


def clip_order(group: list[Utterance]) -> list[Utterance]:
    """A video's clips in clip_id order: numeric if every clip id is a number, else string."""
    clip_ids = [u.id.rsplit("$_$", 1)[1] for u in group]
    if all(c.isdigit() for c in clip_ids):
        keys = [(int(c), c) for c in clip_ids]
    else:
        keys = [(0, c) for c in clip_ids]
    return [u for _, u in sorted(zip(keys, group), key=lambda pair: pair[0])]


def order_groups(by_video: Mapping[str, list[Utterance]]) -> list[Utterance]:
    """Each video's clips put in clip order (in place), numbered and given context; all of them,
    video after video in the mapping's order."""
    for group in by_video.values():
        group[:] = clip_order(group)
        attach_context(group)
    return [u for group in by_video.values() for u in group]


def clips_by_video(rows: Iterable[CsvRow], parse: Callable[[CsvRow], Utterance], path: Path) -> list[Utterance]:
    """The utterances of a label file's ``rows`` (one clip each, ``parse`` makes it): good ones in
    clip order per video, numbered and given context, then the rejected rows, a repeated id among
    them (the first row with an id is kept)."""
    by_video: dict[str, list[Utterance]] = defaultdict(list)
    seen: dict[str, int] = {}
    rejected: list[Utterance] = []
    for row in rows:
        utterance = parse(row)
        if utterance.dropped is None and utterance.id in seen:
            utterance = rejected_row(utterance.id, utterance.split, DUPLICATE_ROW,
                                     f"{path} line {row.line}: duplicate id {utterance.id!r} (line "
                                     f"{seen[utterance.id]} is kept)", utterance.group, row.line)
        if utterance.dropped is not None:
            rejected.append(utterance)
            continue
        seen[utterance.id] = row.line
        by_video[utterance.group].append(utterance)
    return order_groups(by_video) + rejected


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


DATASETS: Registry[type[DatasetAdapter]] = Registry("dataset")


def register_dataset(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Class decorator: make an adapter available by its ``name`` (any case)."""
    return DATASETS.register(cls.name)(cls)


def get_dataset(name: str) -> DatasetAdapter:
    """A fresh adapter for ``name`` (any case); an unknown name (a usage error, also a ``KeyError``)
    lists the known ones."""
    return DATASETS.get(name)()


def dataset_names() -> list[str]:
    """Names of the registered datasets, sorted."""
    return DATASETS.names()


class AnnotationError(UsageError):
    """An annotation file that cannot be read at all (e.g. a CSV without the expected columns)."""


def read_text(path: Path) -> tuple[str, set[int]]:
    """A UTF-8 file's text (byte-order mark dropped) and the numbers of its lines that were not UTF-8.

    Such bytes become U+FFFD instead of failing; lines are counted as Python and the csv module
    count them (``\n``, ``\r\n`` or ``\r`` end a line).
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig"), set()
    except UnicodeDecodeError:
        bad = {number for number, line in enumerate(data.splitlines(), start=1) if not _is_utf8(line)}
        return data.decode("utf-8-sig", errors="replace"), bad


def read_lines(path: Path) -> tuple[list[str], set[int]]:
    """:func:`read_text` cut into lines (numbered as there, from 1)."""
    text, repaired = read_text(path)
    lines = re.split(r"\r\n|\r|\n", text)
    return (lines[:-1] if lines and lines[-1] == "" else lines), repaired


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def repair_note(path: Path, lines: Iterable[int]) -> dict[str, str]:
    """``{"text_repair": ...}`` when any of ``lines`` of ``path`` held bytes that are not UTF-8, else ``{}``."""
    lines = sorted(lines)
    if not lines:
        return {}
    where = ", ".join(map(str, lines))
    return {"text_repair": f"{path.name} line {where}: bytes that are not UTF-8 were replaced by U+FFFD"}


class CsvRow(NamedTuple):
    """One CSV record: its (last) line number, raw values, and the lines it spans that were not UTF-8."""

    line: int
    values: dict[str, str]
    repaired: list[int]


def read_csv_rows(path: Path, columns: Iterable[str]) -> Iterator[CsvRow]:
    """Rows of a UTF-8 CSV (see :class:`CsvRow`); nothing parsed as numbers.

    Bytes that are not UTF-8 become U+FFFD instead of failing (the row says which of its lines
    had them); a byte-order mark is dropped. Text is otherwise kept exactly as written (mojibake
    included). Raises :class:`AnnotationError` when a required column is absent.
    """
    text, bad = read_text(path)
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in columns if name not in header]
        if missing:
            raise AnnotationError(
                f"{path}: missing column(s) {missing}; found {header}. "
                f"Expected the columns {list(columns)}."
            )
        reader.fieldnames = header
        first = reader.line_num + 1
        try:
            for row in reader:
                yield CsvRow(reader.line_num, row, sorted(n for n in bad if first <= n <= reader.line_num))
                first = reader.line_num + 1
        except csv.Error as err:
            raise AnnotationError(
                f"{path} near line {reader.line_num + 1}: not readable as CSV ({err}); "
                "fix or remove that row"
            ) from err
