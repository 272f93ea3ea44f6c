"""The MMSA layout read for any corpus: ``label.csv`` beside ``Raw/<video_id>/<clip_id>.<ext>``.

    <root>/label.csv                      video_id, clip_id, text, label [, mode]
                                          (+ any other columns: label_T, label_A, label_V, annotation, ...)
    <root>/Raw/<video_id>/<clip_id>.mp4   also .avi, .mkv, .mov (video and audio);
                                          .wav, .flac: audio-only clips (the video is masked)

This is the layout the MMSA framework distributes CMU-MOSI, CH-SIMS and CH-SIMS v2 in, and the
one ``--dataset custom`` reads. Ids are kept as written (leading zeros included); an item's id
is ``<video_id>$_$<clip_id>``; a video is a group whose clips, in ``clip_id`` order (numeric
when every clip id of the video is a number), are each other's text context.

:class:`MmsaLayoutAdapter` is the adapter of a published corpus in this layout (``mosi``,
``sims``, ``simsv2``): its label range, published split sizes and language are class
attributes; rows with labels outside the range are rejected naming file and line, split sizes
that differ from the published ones are reported, and a label file in which no row fits the
dataset is refused as a whole.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from hcm.core.files import leads_out, plain_name
from hcm.pipeline.datasets.base import (
    INVALID_ID,
    INVALID_LABEL,
    SPLITS,
    UNKNOWN_SPLIT,
    AnnotationError,
    CsvRow,
    DatasetAdapter,
    Utterance,
    clips_by_video,
    read_csv_rows,
    rejected_row,
    repair_note,
    require_paths,
)
from hcm.pipeline.media import MediaRef

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video_id", "clip_id", "text", "label")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")  # clips with picture and sound
AUDIO_SUFFIXES = (".wav", ".flac")  # audio-only clips
LAYOUT = ["label.csv", "Raw/<video_id>/<clip_id>.mp4 (or .avi .mkv .mov; .wav .flac for audio only)"]
CORE_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")

LabelParser = Callable[[str], "float | int"]  # raw label text -> label; ValueError says why not


def finite(value: str) -> float:
    """``value`` as a finite float; ValueError otherwise."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def other_label(value: str | None) -> float | str | None:
    """A further column's value: None when empty, a number when it reads as one, else the text."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return finite(value)
    except ValueError:
        return value


class MediaIndex:
    """The clip files under ``Raw/``, listed once per video folder; links that lead out of ``Raw/``
    are left out."""

    def __init__(self, raw: Path) -> None:
        self.raw = raw
        self._folders: dict[str, dict[str, list[Path]]] = {}

    def clip(self, video_id: str, clip_id: str) -> tuple[MediaRef | None, MediaRef] | None:
        """``(video, audio)`` of one clip: a video file feeds both, an audio file only the audio;
        with no file, ``Raw/<video_id>/<clip_id>.mp4`` (reported missing when it is decoded), or
        None when that path is a link leading out of ``Raw/``."""
        found = self._folder(video_id).get(clip_id, [])
        for suffix in VIDEO_SUFFIXES + AUDIO_SUFFIXES:
            for path in found:
                if path.suffix.lower() == suffix:
                    ref = MediaRef(path)
                    return (ref if suffix in VIDEO_SUFFIXES else None), ref
        missing = MediaRef(self.raw / video_id / f"{clip_id}.mp4")
        return None if leads_out(self.raw, missing.path) else (missing, missing)

    def _folder(self, video_id: str) -> dict[str, list[Path]]:
        """The files of ``Raw/<video_id>/`` by stem, leaving out links that lead out of ``Raw/``."""
        if video_id not in self._folders:
            folder = self.raw / video_id
            files: dict[str, list[Path]] = defaultdict(list)
            if folder.is_dir() and not leads_out(self.raw, folder):
                for path in sorted(folder.iterdir()):
                    if not leads_out(self.raw, path):
                        files[path.stem].append(path)
            self._folders[video_id] = files
        return self._folders[video_id]


def read_label_rows(path: Path) -> tuple[list[CsvRow], bool]:
    """The rows of ``label.csv`` and whether it has a ``mode`` column."""
    rows = list(read_csv_rows(path, REQUIRED_COLUMNS))
    has_mode = bool(rows) and "mode" in rows[0].values
    if not rows:
        raise AnnotationError(f"{path}: no rows after the header; add one row per clip "
                              f"({', '.join(REQUIRED_COLUMNS)}, mode)")
    return rows, has_mode


def clip_ids(row: CsvRow, path: Path, mode: str) -> tuple[str, str] | Utterance:
    """``(video_id, clip_id)`` of a label-file row, or its rejected row when either is empty or is a
    path rather than a name (media are read only from ``Raw/<video_id>/<clip_id>.<ext>``)."""
    video_id = (row.values.get("video_id") or "").strip()
    clip_id = (row.values.get("clip_id") or "").strip()
    split, where = (mode if mode in SPLITS else ""), f"{path} line {row.line}"
    if not video_id or not clip_id:
        return rejected_row(f"{path.name}:{row.line}", split, INVALID_ID, f"{where}: empty video_id or clip_id",
                            video_id, row.line)
    if not (plain_name(video_id) and plain_name(clip_id)):
        return rejected_row(f"{video_id}$_${clip_id}", split, INVALID_ID,
                            f"{where}: video_id {video_id!r} or clip_id {clip_id!r} is a path, not a name; media "
                            f"are read only from Raw/<video_id>/<clip_id>.<ext> inside the dataset folder",
                            video_id, row.line)
    return video_id, clip_id


def parse_row(row: CsvRow, path: Path, media: MediaIndex, parse_label: LabelParser, has_mode: bool) -> Utterance:
    """One row as an utterance (split ``""`` without a ``mode`` column); a bad row is a rejected row."""
    values, where = row.values, f"{path} line {row.line}"
    mode = (values.get("mode") or "").strip() if has_mode else ""
    ids = clip_ids(row, path, mode)
    if isinstance(ids, Utterance):
        return ids
    video_id, clip_id = ids
    item_id = f"{video_id}$_${clip_id}"
    if has_mode and mode not in SPLITS:
        return rejected_row(item_id, "", UNKNOWN_SPLIT, f"{where}: mode {mode!r} is not one of {list(SPLITS)}",
                            video_id, row.line)
    raw_label = (values.get("label") or "").strip()
    try:
        label = parse_label(raw_label)
    except ValueError as err:
        return rejected_row(item_id, mode, INVALID_LABEL, f"{where}: label {raw_label!r}: {err}", video_id, row.line)
    labels = {name: other_label(value) for name, value in values.items()
              if name and name not in CORE_COLUMNS}
    clip = media.clip(video_id, clip_id)
    if clip is None:
        return rejected_row(item_id, mode, INVALID_ID, f"{where}: Raw/{video_id}/{clip_id} is a link that leads out "
                            f"of the dataset folder; media are read only from inside it", video_id, row.line)
    return Utterance(id=item_id, split=mode, label=label, labels=labels, text=values.get("text") or "",
                     group=video_id, position=0, video=clip[0], audio=clip[1], notes=repair_note(path, row.repaired))


def read_layout(root: Path, parse_label: LabelParser, rows: list[CsvRow], has_mode: bool) -> list[Utterance]:
    """Every row of ``<root>/label.csv`` (``rows``, as :func:`read_label_rows` read them): good ones
    numbered and given context per video, the others as rejected rows (duplicates of an earlier id
    included)."""
    path = root / "label.csv"
    media = MediaIndex(root / "Raw")
    return clips_by_video(rows, lambda row: parse_row(row, path, media, parse_label, has_mode), path)


def split_counts(items: list[Utterance]) -> dict[str, int]:
    """Usable items per split."""
    counts = Counter(u.split for u in items if u.dropped is None)
    return {split: counts.get(split, 0) for split in SPLITS}


class MmsaLayoutAdapter(DatasetAdapter):
    """A published regression corpus in the MMSA layout; subclasses set the facts below."""

    task = "regression"
    classes = None
    title: str = ""  # the corpus's published name, for messages
    label_range: tuple[float, float] = (-3.0, 3.0)
    published_splits: dict[str, int] = {}  # split sizes of the published corpus

    def __init__(self) -> None:
        self._report: list[str] = []

    def check_root(self, root: Path) -> None:
        require_paths(self.name, Path(root), ["label.csv", "Raw/"], self.source, LAYOUT)

    def read(self, root: Path) -> list[Utterance]:
        path = Path(root) / "label.csv"
        rows, has_mode = read_label_rows(path)
        if not has_mode:
            raise AnnotationError(f"{path}: no `mode` column; {self.title} rows name their split "
                                  f"(train, valid, test) there. For clips without one use --split-file, "
                                  f"or --dataset custom (it makes a seeded split by video)")
        items = read_layout(Path(root), self.parse_label, rows, has_mode)
        self._check(path, items)
        return items

    def parse_label(self, value: str) -> float:
        """A sentiment score inside the dataset's range."""
        low, high = self.label_range
        try:
            score = finite(value)
        except ValueError:
            raise ValueError(f"not a number; {self.title} labels are sentiment scores in [{low:g}, {high:g}] "
                             f"(for labels of your own use --dataset custom)") from None
        if not low <= score <= high:
            raise ValueError(f"outside {self.title}'s range [{low:g}, {high:g}]")
        return score

    def _check(self, path: Path, items: list[Utterance]) -> None:
        """Refuse a file in which no row fits; report split sizes unlike the published ones."""
        usable = [u for u in items if u.dropped is None]
        if not usable:
            reasons = Counter(u.dropped[0] for u in items if u.dropped)
            example = next((u.dropped[1] for u in items if u.dropped), "")
            raise AnnotationError(
                f"{path}: none of its {len(items)} rows is a {self.title} clip "
                f"({', '.join(f'{reason} {n}' for reason, n in reasons.most_common())}; e.g. {example}). "
                f"Is this the label file of another dataset? Labels of your own: --dataset custom")
        counts = split_counts(items)
        self._report = []
        differing = [s for s in SPLITS if counts[s] != self.published_splits.get(s, counts[s])]
        if differing:
            sizes = ", ".join(f"{s} {counts[s]} (published {self.published_splits[s]})" for s in differing)
            self._report.append(f"split sizes differ from the published {self.title}: {sizes}; fine for a "
                                f"subset or a split of your own, otherwise check label.csv's mode column")
            log.warning("%s: %s", self.name, self._report[-1])

    def report(self) -> list[str]:
        return list(self._report)
