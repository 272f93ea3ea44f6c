"""The registry of sample corpora and ``make_sample``, which writes one of them to disk.

A corpus module registers a *planner* with :func:`register_sample`. The planner decides the
corpus's structure up front from ``n``, the seed and ``faults`` (ids, splits, where the faults
go) and returns a :class:`CorpusPlan` whose items (one utterance, or one IEMOCAP dialogue: its
annotation rows and its media) are drawn one at a time while ``make_sample`` writes them, so a
large ``--n`` starts writing at once, shows its progress and holds one item in memory. Each
item renders from its own seed, and the items are drawn in a fixed order, so one seed gives
byte-identical annotation files and the same media.

Every sample root holds ``.hcm-sample.json`` (dataset, n, seed, counts, faults) once it is
complete, and ``.hcm-sample-partial.json`` while it is being written. A folder that holds either
is replaced by the next ``make_sample`` into it; any other non-empty folder is refused.

Before any work, ``make_sample`` says how much disk and time the corpus will take (from the bytes
and seconds per utterance each corpus declares, measured on its default size) and refuses a corpus
that does not fit the free space of the target's file system.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hcm.core.errors import UnknownNameError, UsageError
from hcm.core.files import check_writable
from hcm.core.progress import progress_bar
from hcm.core.registry import Registry

MARKER = ".hcm-sample.json"
PARTIAL = ".hcm-sample-partial.json"  # a sample being written (or interrupted): replaced like a finished one

# Fault kinds recorded in SampleSummary.faults.
MISSING_CLIP = "missing_clip"  # an annotated utterance whose media file does not exist
NO_AUDIO = "no_audio"  # a clip without an audio stream
TRUNCATED_MEDIA = "truncated_media"  # a media file cut short; it does not decode
EMPTY_TEXT = "empty_text"  # an utterance whose transcript is empty
MISSING_TRANSCRIPTION = "missing_transcription"  # IEMOCAP: an annotated turn with no transcript line
MISSING_WAV = "missing_wav"  # IEMOCAP: an annotated turn without its sentence wav


@dataclass(frozen=True)
class Fault:
    """One deliberate defect of a sample corpus, for tests of the readers to assert."""

    kind: str  # one of the fault kinds above
    item: str  # the dataset's own utterance id (``vid$_$clip``, ``train_dia3_utt1``, turn id)
    split: str  # train / valid / test (IEMOCAP: the session, e.g. ``Session2``)
    path: str  # the affected file, relative to the corpus root
    detail: str  # what exactly is wrong

    def __str__(self) -> str:
        return f"{self.kind}: {self.item} ({self.split}) {self.path}: {self.detail}"


@dataclass(frozen=True)
class MediaJob:
    """Media files to write: ``write`` receives the corpus root and writes ``path`` (and any
    further files of the same recording, e.g. IEMOCAP's sentence wavs of one dialogue)."""

    path: str  # the main file, relative to the corpus root; its folder is made before ``write``
    write: Callable[[Path], None]


@dataclass(frozen=True)
class PlannedItem:
    """One unit of a corpus as the writer receives it: one utterance (IEMOCAP: one dialogue)."""

    split: str  # one of CorpusPlan.splits
    rows: tuple[tuple[str, str], ...]  # (annotation file relative to the root, text appended to it)
    media: MediaJob | None  # None: no media file (a missing-clip fault)
    utterances: int = 1


@dataclass
class CorpusPlan:
    """What a planner decided: the files' first lines, the items (drawn lazily), splits and faults."""

    files: dict[str, str]  # relative path -> text written before any item (annotation headers)
    items: Iterable[PlannedItem]  # drawn and written one at a time, in this order; n utterances in all
    splits: tuple[str, ...]  # the items' splits (IEMOCAP: sessions) in the order the summary reports them
    faults: list[Fault] = field(default_factory=list)


@dataclass(frozen=True)
class SampleRequest:
    """The arguments every planner receives."""

    n: int
    seed: int
    faults: bool


@dataclass(frozen=True)
class SampleGenerator:
    """A registered sample corpus."""

    name: str
    plan: Callable[[SampleRequest], CorpusPlan]
    default_n: int  # utterances in the default corpus
    min_n: int  # fewest utterances the layout can hold (every split present)
    description: str
    bytes_per_item: int  # disk per utterance (media + annotations), measured on the default corpus
    seconds_per_item: float  # wall time per utterance, measured on the default corpus (2-core CPU, loaded)


@dataclass
class SampleSummary:
    """What ``make_sample`` wrote."""

    dataset: str
    root: Path
    counts: dict[str, int]  # utterances per split (IEMOCAP: per session)
    faults: list[Fault]
    seconds: float  # wall time of the generation

    @property
    def total(self) -> int:
        return sum(self.counts.values())


SAMPLES: Registry[SampleGenerator] = Registry("sample corpus")


def register_sample(name: str, default_n: int, min_n: int, description: str, bytes_per_item: int = 40_000,
                    seconds_per_item: float = 0.07):
    """Decorator registering a planner ``(SampleRequest) -> CorpusPlan`` under ``name``."""

    def decorate(plan: Callable[[SampleRequest], CorpusPlan]):
        SAMPLES.register(name)(SampleGenerator(name.lower(), plan, default_n, min_n, description, bytes_per_item,
                                               seconds_per_item))
        return plan

    return decorate


def available_samples() -> list[str]:
    """Names of the registered sample corpora."""
    return SAMPLES.names()


def get_sample(name: str) -> SampleGenerator:
    """The registered corpus ``name`` (any case); a clear error for an unknown one."""
    try:
        return SAMPLES.get(name)
    except UnknownNameError:
        raise UnknownNameError(f"unknown sample dataset {name!r}; choose from {available_samples()}") from None


def make_sample(dataset: str, out: Path, n: int | None = None, seed: int = 0,
                faults: bool = False, progress: bool = True) -> SampleSummary:
    """Write the synthetic ``dataset`` corpus in its real raw layout under ``out``.

    Args:
        dataset: a registered name (``mosei``, ``meld``, ``iemocap``).
        out: the corpus root; created, or replaced when it holds an earlier sample.
        n: number of utterances (default: the corpus's default size).
        seed: the same seed gives byte-identical annotation files and the same media.
        faults: add the defects real archives have (missing, silent, truncated clips, ...).
        progress: show a progress bar while media are encoded.
    """
    generator = get_sample(dataset)
    n = generator.default_n if n is None else int(n)
    if n < generator.min_n:
        raise UsageError(f"--n {n} is too small for {dataset}: its layout needs at least "
                         f"{generator.min_n} utterances so that every split has one")
    check_writable(Path(out).expanduser().resolve().parent, "the sample's parent folder")
    check_room(generator, n, Path(out), announce=progress)
    started = time.perf_counter()
    request = SampleRequest(n=n, seed=seed, faults=faults)
    with _status(progress and faults, f"placing the faults among {n:,} {generator.name} utterances"):
        plan = generator.plan(request)
    root = _prepare_root(Path(out))
    (root / PARTIAL).write_text(json.dumps({"dataset": generator.name, **asdict(request)}, indent=2) + "\n",
                               encoding="utf-8")
    for relative, content in plan.files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8", newline="")
    counts = _write_items(root, plan, n, f"{generator.name} utterances", progress)
    summary = SampleSummary(generator.name, root, counts, list(plan.faults), time.perf_counter() - started)
    (root / MARKER).write_text(_marker_json(summary, n, seed), encoding="utf-8")
    (root / PARTIAL).unlink()
    return summary


def check_room(generator: SampleGenerator, n: int, out: Path, announce: bool = True) -> None:
    """Say (on stderr, when ``announce``) how much disk and time ``n`` utterances take; refuse when the
    file system of ``out`` has less free space than that."""
    need, seconds = n * generator.bytes_per_item, n * generator.seconds_per_item
    existing = next((folder for folder in (out.expanduser().resolve(), *out.expanduser().resolve().parents)
                     if folder.exists()), Path("/"))
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = None
    if free is not None and need > free:
        raise UsageError(f"--n {n:,} {generator.name} utterances need about {_size(need)} of disk, and {existing} "
                         f"has {_size(free)} free; choose a smaller --n or another --out")
    if announce:
        print(f"{generator.name}: {n:,} utterances, about {_size(need)} of disk and {_duration(seconds)} "
              f"(measured per utterance on a 2-core CPU); writing to {out}", file=sys.stderr)


def _status(enabled: bool, message: str) -> Any:
    from rich.console import Console

    return Console(stderr=True).status(message) if enabled else nullcontext()


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.0f} days"


def make_samples(datasets: Sequence[str], parent: Path, n: int | None = None, seed: int = 0,
                 faults: bool = False, progress: bool = True) -> list[SampleSummary]:
    """Several corpora, each written to ``<parent>/sample-<dataset>``."""
    return [make_sample(name, Path(parent) / f"sample-{name}", n, seed, faults, progress)
            for name in datasets]


def sample_into_workspace(workspace_data: Path, dataset: str, out: Path | None = None,
                          n: int | None = None, seed: int = 0, faults: bool = False,
                          progress: bool = True) -> list[SampleSummary]:
    """What ``hcm sample`` does: one corpus, or ``all`` of them, under the workspace by default.

    One corpus goes to ``out`` (default ``<workspace_data>/sample-<dataset>``); ``all`` writes
    each corpus to ``<out or workspace_data>/sample-<dataset>``.
    """
    dataset = dataset.lower()  # sample names are case-insensitive; the folder is always lower case
    if dataset == "all":
        return make_samples(available_samples(), out or workspace_data, n, seed, faults, progress)
    target = out or Path(workspace_data) / f"sample-{dataset}"
    return [make_sample(dataset, target, n, seed, faults, progress)]


def format_summary(summary: SampleSummary) -> str:
    """A few lines for the terminal: where, how many per split, which faults."""
    counts = ", ".join(f"{split} {count}" for split, count in summary.counts.items())
    lines = [f"{summary.dataset}: {summary.total} utterances in {summary.root} "
             f"({counts}; {summary.seconds:.1f} s)"]
    if summary.faults:
        lines.append(f"  {len(summary.faults)} faults:")
        lines.extend(f"  - {fault}" for fault in summary.faults)
    return "\n".join(lines)


def _prepare_root(root: Path) -> Path:
    root = root.expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file; give --out a folder")
    if root.is_dir() and any(root.iterdir()):
        if not ((root / MARKER).is_file() or (root / PARTIAL).is_file()):
            raise FileExistsError(
                f"{root} is not empty and holds no earlier hcm sample ({MARKER}); "
                "choose an empty or new folder with --out"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_items(root: Path, plan: CorpusPlan, n: int, label: str, show: bool) -> dict[str, int]:
    """Write every item of ``plan`` (``n`` utterances) as it is drawn: its rows appended to their
    files, then its media; the utterances written per split."""
    counts = dict.fromkeys(plan.splits, 0)
    with progress_bar(show, eta=True, stderr=True) as bar:
        task = bar.add_task(label, total=n)
        for item in plan.items:
            for relative, text in item.rows:
                target = root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "a", encoding="utf-8", newline="") as handle:
                    handle.write(text)
            if item.media is not None:
                (root / item.media.path).parent.mkdir(parents=True, exist_ok=True)
                item.media.write(root)
            counts[item.split] += item.utterances
            bar.advance(task, item.utterances)
    return counts


def _marker_json(summary: SampleSummary, n: int, seed: int) -> str:
    record = {
        "dataset": summary.dataset,
        "n": n,
        "seed": seed,
        "counts": summary.counts,
        "faults": [asdict(fault) for fault in summary.faults],
    }
    return json.dumps(record, indent=2) + "\n"
