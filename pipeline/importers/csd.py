"""``hcm import csd``: CMU-MultimodalSDK computational sequences -> an ordinary hcm feature cache.

The folder holds the SDK's ``.csd`` files of CMU-MOSI or CMU-MOSEI (read as
:mod:`hcm.pipeline.importers.csd_file` describes). Sequences are found by their root name or
file name (``COVAREP``, ``FACET_4.2``/``FACET 4.2``, ``glove_vectors``, ``words``, ...; case,
spaces and punctuation ignored). Defaults are the SDK's high-level set: GloVe word vectors for
text, FACET 4.2 for video, COVAREP for audio, plus the words (the transcript) and the labels
(``Opinion Segment Labels`` for MOSI, ``All Labels`` for MOSEI, sentiment in the first column).

- Every labelled interval of a video is one item ``<video_id>$_$<k>``, ``k`` counting the
  video's segments in time order (from 1 for MOSI, from 0 for MOSEI); its text is the segment's
  words without the SDK's silences (``sp``).
- Unaligned (default): each stream keeps the rows whose interval overlaps the segment;
  ``--align words`` averages every stream over each word interval of the segment, as the SDK's
  alignment to the words does (one node per word in each modality).
- The text graph is a chain over the text rows (``text_edges``); streams are ``csd_text``,
  ``csd_video``, ``csd_audio`` (float32, non-finite values set to 0 and counted in the notes),
  declared in the recipe so training feeds them.
- Splits are the SDK's standard folds (``configs/datasets/folds/<dataset>.json``, video ids);
  segments of a video in no fold are not items: each is a failure ``not in a standard fold``
  in the manifest and the summary, as is a label outside [-3, 3]. A modality whose sequence has
  nothing for the segment is masked with the reason.

The cache is written through the shared shard loop (``hcm.pipeline.shards``): shard by shard,
so a re-run resumes.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence as Seq

import numpy as np

from hcm import __version__
from hcm.cache import CacheMeta, CacheWriter, Failure, FeatureSpec, Item
from hcm.cache.manifest import sha256_file
from hcm.cache.writer import exclusive_run
from hcm.core.errors import UsageError
from hcm.core.names import REGRESSION, SPLITS
from hcm.core.workspace import Workspace
from hcm.pipeline.importers.csd_file import (
    SILENCE,
    CsdError,
    Sequence,
    key,
    segment_rows,
    sentiment,
    standard_folds,
    word_average,
    words_of,
)
from hcm.pipeline.shards import Advance, ShardCounts, ShardLoop, storable

log = logging.getLogger(__name__)
SOURCE_FORMAT = "csd"
ALIGNMENTS = ("none", "words")
NOT_IN_FOLD = "not in a standard fold"
INVALID_LABEL = "invalid label"
NO_WORDS = "no words to align to"
STREAM_OF = {"text": "csd_text", "video": "csd_video", "audio": "csd_audio"}
MOSEI_LABELS = ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")


@dataclass(frozen=True)
class CsdDataset:
    """What the importer knows of one dataset the SDK distributes."""

    name: str
    labels: str  # the label sequence's root name
    label_names: tuple[str, ...]  # label columns, sentiment first
    first_clip: int  # number of a video's first segment
    label_range: tuple[float, float] = (-3.0, 3.0)


CSD_DATASETS = {
    "mosi": CsdDataset("mosi", "Opinion Segment Labels", ("sentiment",), 1),
    "mosei": CsdDataset("mosei", "All Labels", MOSEI_LABELS, 0),
}
DEFAULT_SEQUENCES = {"words": "words", "text": "glove_vectors", "video": "FACET_4.2", "audio": "COVAREP"}


def csd_dataset(name: str) -> CsdDataset:
    """The facts of ``name``; an unknown name is a usage error naming the known ones (this module
    loads without torch, so the command line checks ``--dataset`` with it at once)."""
    if name not in CSD_DATASETS:
        raise UsageError(f"unknown dataset {name!r}: the SDK's standard folds are known for {', '.join(CSD_DATASETS)}")
    return CSD_DATASETS[name]


def find_sequences(folder: Path, wanted: dict[str, str]) -> dict[str, Path]:
    """role -> file of each wanted sequence name (root name or file name; see the module doc)."""
    import h5py

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give the folder holding the .csd files")
    files = sorted(folder.glob("*.csd"))
    roots: dict[Path, str] = {}
    for path in files:
        try:
            with h5py.File(path, "r") as handle:
                roots[path] = next(iter(handle.keys()), "")
        except OSError as error:
            raise CsdError(f"{path}: not an HDF5 computational sequence ({error})") from error
    found, missing = {}, []
    for role, name in wanted.items():
        stem = name[:-4] if name.lower().endswith(".csd") else name  # a file name is matched by its stem
        matches = [p for p in files if key(roots[p]) == key(name)] or \
                  [p for p in files if key(p.stem).endswith(key(stem))]
        if len(matches) == 1:
            found[role] = matches[0]
        else:
            which = "several files: " + ", ".join(p.name for p in matches) if matches else "none"
            missing.append(f"{role} {name!r} ({which})")
    if missing:
        known = ", ".join(f"{p.name} ({roots[p]})" for p in files) or "no .csd files"
        raise UsageError(f"{folder}: cannot find the sequence for {'; '.join(missing)}. Found: {known}. Name the "
                         f"sequences with --text/--video/--audio/--words/--labels (root or file name)")
    return found


@dataclass
class Segment:
    """One labelled interval of a video."""

    video: str
    number: int
    start: float
    end: float
    labels: np.ndarray  # the label row

    @property
    def id(self) -> str:
        return f"{self.video}$_${self.number}"


@dataclass
class ImportSummary:
    """What one ``import_csd`` call did."""

    dataset: str
    source: Path
    out: Path
    align: str
    planned: int = 0
    imported: int = 0
    shards: ShardCounts = field(default_factory=ShardCounts)
    split_counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason: detail)
    masked: list[tuple[str, str]] = field(default_factory=list)  # (id, what)
    fold_videos_missing: list[str] = field(default_factory=list)  # fold videos without labels
    seconds: float = 0.0

    def format(self, show: int = 10) -> str:
        """A few lines for the terminal."""
        counts = ", ".join(f"{s} {self.split_counts.get(s, 0)}" for s in SPLITS)
        lines = [f"{self.dataset} from {self.source} (SDK sequences, align {self.align}): {self.imported} imported "
                 f"({counts}), {len(self.masked)} with a masked modality, {len(self.skipped)} skipped; "
                 f"{self.seconds:.1f} s",
                 f"shards: {self.shards.done()}; plan {self.planned} segments", f"cache: {self.out}"]
        if self.fold_videos_missing:
            lines.append(f"{len(self.fold_videos_missing)} video(s) of the standard folds have no labels here: "
                         + ", ".join(self.fold_videos_missing[:show]) + (" ..." if len(self.fold_videos_missing) > show
                                                                         else ""))
        for title, entries in (("skipped", self.skipped), ("masked", self.masked)):
            if entries:
                lines.append(f"{title}:")
                lines += [f"  - {item}: {reason}" for item, reason in entries[:show]]
                if len(entries) > show:
                    lines.append(f"  ... and {len(entries) - show} more (see {self.out}/manifest.json)")
        return "\n".join(lines)


def plan_segments(labels: Sequence, info: CsdDataset) -> list[Segment]:
    """Every labelled interval, videos in id order, segments in time order."""
    segments = []
    for video in labels.videos:
        values, spans = labels.get(video)
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        for number, row in enumerate(np.argsort(spans[:, 0], kind="stable"), start=info.first_clip):
            segments.append(Segment(video, number, float(spans[row, 0]), float(spans[row, 1]), values[row]))
    return segments


class Streams:
    """The open sequences, with each video's rows (and its words, decoded) read once."""

    def __init__(self, sequences: dict[str, Sequence]) -> None:
        self.sequences = sequences
        self._video: str | None = None
        self._rows: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        self._words: list[str] = []

    def rows(self, role: str, video: str) -> tuple[np.ndarray, np.ndarray] | None:
        if video != self._video:
            self._video, self._rows = video, {r: s.get(video) for r, s in self.sequences.items()}
            words = self._rows.get("words")
            self._words = words_of(words[0]) if words is not None else []
        return self._rows[role]

    def words(self, video: str) -> tuple[list[str], np.ndarray] | None:
        """The words of ``video`` as text with their intervals (n, 2); None without a word sequence for it."""
        found = self.rows("words", video)
        return None if found is None else (self._words, found[1])


def _clean(values: np.ndarray, name: str, notes: dict[str, str]) -> np.ndarray:
    bad = ~np.isfinite(values)
    if bad.any():
        notes[f"{name}_nonfinite"] = f"{int(bad.sum())} non-finite {name} values set to 0"
        values = np.where(bad, 0.0, values).astype(np.float32)
    return values


def segment_item(segment: Segment, split: str, streams: Streams, align: str, info: CsdDataset) -> Item | Failure:
    """The item of one segment, or the failure that says why it is none."""
    label, (low, high) = sentiment(segment.labels), info.label_range
    if not math.isfinite(label) or not low <= label <= high:
        return Failure(segment.id, INVALID_LABEL, split, f"sentiment {label} is not a score in [{low:g}, {high:g}]")
    found_words = streams.words(segment.video)
    words, word_spans = [], np.zeros((0, 2))
    if found_words is not None:
        inside = [(w, s) for w, s in zip(*found_words)
                  if w != SILENCE and s[0] < segment.end and s[1] > segment.start]
        words = [w for w, _ in inside]
        word_spans = np.array([s for _, s in inside]).reshape(-1, 2)
    if align == "words" and not words:
        return Failure(segment.id, NO_WORDS, split, "--align words: the segment holds no word")
    item = Item(id=segment.id, split=split, label=label,
                labels={n: float(v) for n, v in zip(info.label_names[1:], segment.labels[1:])},
                text=" ".join(words), group=segment.video, position=segment.number)
    for modality, stream in STREAM_OF.items():
        found = streams.rows(modality, segment.video)
        width = streams.sequences[modality].width
        if found is None:
            rows = np.zeros((0, width), np.float32)
        elif align == "words":
            rows = word_average(found[0], found[1], word_spans)
        else:
            rows = segment_rows(found[0], found[1], segment.start, segment.end)
        item.features[stream] = _clean(rows, stream, item.notes)
        item.masks[modality] = bool(len(rows))
        if not len(rows):
            why = "the sequence has no rows for this video" if found is None else "no rows inside the segment"
            item.notes[modality] = f"{why}; imported with an empty {modality} mask"
    n = len(item.features["csd_text"])
    item.features["text_edges"] = np.stack([np.arange(1, n), np.arange(n - 1)], axis=1).astype(np.int32) \
        if n > 1 else np.zeros((0, 2), np.int32)  # (n-1, 2): each word to the word before it
    return item


def import_meta(info: CsdDataset, sequences: dict[str, Sequence], digests: dict[str, str], align: str,
                shard_size: int) -> CacheMeta:
    """The cache metadata: the source files by content, the alignment, the declared streams."""
    specs = [FeatureSpec(STREAM_OF[m], (sequences[m].width,), "float32", encoder=SOURCE_FORMAT,
                         weights=f"{sequences[m].path.name}:{digests[m][:12]}",
                         config={"sequence": sequences[m].root, "align": align, "nonfinite": "set to 0"})
             for m in STREAM_OF]
    specs.append(FeatureSpec("text_edges", (2,), "int32", encoder=SOURCE_FORMAT, config={"graph": "chain"}))
    recipe = {
        "hcm_version": __version__, "dataset": info.name,
        "source": {"format": SOURCE_FORMAT, "align": align, "folds": "CMU-MultimodalSDK standard folds",
                   "files": {role: {"file": s.path.name, "root": s.root, "sha256": digests[role]}
                             for role, s in sequences.items()}},
        "streams": {m: [STREAM_OF[m]] for m in STREAM_OF}, "plan": {},
    }
    return CacheMeta(dataset=info.name, profile=SOURCE_FORMAT, task=REGRESSION, classes=None, recipe=recipe,
                     features=specs, shard_size=shard_size)


def import_csd(folder: str | Path, dataset: str, *, out: Path | None = None, workspace: Workspace | None = None,
               sequences: dict[str, str | None] | None = None, align: str = "none", shard_size: int = 1000,
               progress: bool = True) -> ImportSummary:
    """Import the ``.csd`` files in ``folder`` (see the module docstring).

    Args:
        dataset: ``mosi`` or ``mosei`` (label sequence, segment numbering, standard folds).
        out: cache folder (default ``<workspace>/features/<dataset>/csd``).
        sequences: role (``text``, ``video``, ``audio``, ``words``, ``labels``) -> sequence name,
            over the defaults.
        align: ``none`` (rows overlapping each segment) or ``words`` (averaged per word).
    """
    started = time.perf_counter()
    info = csd_dataset(dataset)
    if align not in ALIGNMENTS or shard_size < 1:
        raise UsageError(f"--align must be one of {ALIGNMENTS} (got {align!r}) and --shard-size at least 1")
    wanted = {**DEFAULT_SEQUENCES, "labels": info.labels,
              **{role: name for role, name in (sequences or {}).items() if name}}
    folder = Path(folder)
    paths = find_sequences(folder, wanted)
    workspace = workspace or Workspace.resolve()
    out = Path(out) if out is not None else workspace.features_dir(dataset, SOURCE_FORMAT)
    with ExitStack() as stack:
        opened = {role: Sequence(path) for role, path in paths.items()}
        for sequence in opened.values():
            stack.callback(sequence.close)
        folds = standard_folds(dataset)
        segments = plan_segments(opened["labels"], info)
        summary = ImportSummary(dataset, folder, out, align, planned=len(segments))
        summary.fold_videos_missing = sorted(set(folds) - set(opened["labels"].videos))
        digests = {role: sha256_file(path) for role, path in paths.items()}
        writer = CacheWriter(out, import_meta(info, opened, digests, align, shard_size))
        run = _Run(folds, Streams({role: s for role, s in opened.items() if role != "labels"}), align, info)
        with exclusive_run(out, "import"):
            loop = ShardLoop(segments, shard_size, writer)
            summary.shards = loop.counts
            loop.run(lambda k, shard, advance: write_shard(writer, k, shard, advance, run, summary),
                     f"import {dataset}", progress)
        writer.finalize(len(segments))
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class _Run:
    """The fixed parts of one import that writing a shard needs."""

    folds: dict[str, str]
    streams: Streams
    align: str
    info: CsdDataset


def write_shard(writer: CacheWriter, k: int, shard: Seq[Segment], advance: Advance, run: _Run,
                summary: ImportSummary) -> bool:
    """Cut the segments of shard ``k`` into items (or failures) and write the shard (False: another
    process wrote it meanwhile, and its items are not counted here)."""
    items, failures = [], []
    for segment in shard:
        split = run.folds.get(segment.video)
        made = Failure(segment.id, NOT_IN_FOLD, "", f"video {segment.video} is in none of the SDK's standard "
                       f"folds") if split is None else \
            segment_item(segment, split, run.streams, run.align, run.info)
        (items if isinstance(made, Item) else failures).append(made)
        advance(1)
    items, refused = storable(writer, items)
    failures += refused
    if not writer.write_shard_once(k, items, failures):
        return False
    _count(summary, items, failures)
    return True


def _count(summary: ImportSummary, items: Seq[Item], failures: Seq[Failure]) -> None:
    summary.imported += len(items)
    for split in SPLITS:
        summary.split_counts[split] = summary.split_counts.get(split, 0) + sum(i.split == split for i in items)
    summary.skipped += [(f.id, f"{f.reason}: {f.detail}") for f in failures]
    summary.masked += [(i.id, ", ".join(m for m in STREAM_OF if not i.masks[m])) for i in items
                       if not all(i.masks.values())]
