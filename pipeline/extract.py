"""``hcm extract``: raw dataset -> feature cache, with batching, worker decoding, resume and shards.

Flow of one extraction::

    adapter.utterances() -> plan (dataset order, optional --limit) -> shards of shard_size positions
    worker processes: MediaDecoder (read frames/audio, per-encoder preparation)   [bounded prefetch]
    main process: per shard, batches of --batch-size through every encoder -> Items -> CacheWriter

- Everything that can fail for lack of weights, a folder that cannot be written, or another
  extraction holding the same shards of ``out`` is checked before any clip is decoded.
- Every labelled row of the dataset is a plan position. A medium that cannot be used (file
  missing, cannot decode, no audio/video stream, zero-length clip, no source) masks the
  modalities it feeds (``masks[m] = False``, empty streams, reason in ``Item.notes[m]`` and a
  ``Masked`` entry in the manifest); the item is dropped (a ``Failure``) only when no modality
  is left or the reader rejected its row (label invalid or outside the classes, missing label
  file, duplicate). ``strict`` stops at the first such problem instead.
- Shards already complete in ``out`` are skipped, so a re-run continues an interrupted one.
- ``num_shards``/``shard_index`` (or RANK/WORLD_SIZE, SLURM_ARRAY_TASK_ID/COUNT) split the
  shards between processes: worker I writes the shards k with k % N == I. A second process with
  the same assignment stops at once naming the first; a shard that another process completed
  while this one encoded it is kept as written.
- Batches never cross a shard boundary and encoders are seeded, so the cache does not depend on
  how many workers or resumes made it.

:func:`extract_clip` runs one clip (and its transcript) through the same decoder, preparers and
encoders and returns the ``Item`` an extraction would write (``hcm predict`` uses it).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from hcm import __version__
from hcm.cache import CacheError, CacheMeta, CacheWriter, Failure, FeatureSpec, Item, Masked
from hcm.cache.manifest import load_manifest, read_manifest
from hcm.cache.schema import recipe_precision, weight_changes
from hcm.cache.writer import exclusive_run, prepare_directory
from hcm.core.device import resolve_device
from hcm.core.errors import HcmError, UsageError, report_errors
from hcm.core.names import CLASSIFICATION, MODALITIES
from hcm.core.progress import progress_bar
from hcm.core.workspace import Workspace
from hcm.pipeline.datasets import SplitFile, get_dataset
from hcm.pipeline.datasets.base import EXCLUDED_CLASS, Utterance
from hcm.pipeline.encoders.base import Encoder, Preparer, create_encoder
from hcm.pipeline.encoders.precision import check_choice, choose_precision, mismatch_note
from hcm.pipeline.media import (
    NO_AUDIO, NO_VIDEO, ZERO_LENGTH, MediaError, MediaRef, read_audio_rates, read_frames,
)
from hcm.pipeline.profiles import (
    Profile, ResolvedWeights, WeightOptions, get_profile, resolve_weights, weights_recipe,
)

log = logging.getLogger(__name__)

MASKING_REASONS = (NO_VIDEO, NO_AUDIO, ZERO_LENGTH)  # masked even where unreadable media fail (one-clip predict)
PREFETCH_PER_WORKER = 4  # decoded clips in flight per worker, beyond one encoder batch
NO_SOURCE = "no source"
EMPTY_TRANSCRIPT = "empty transcript"
UNEXPECTED = "unexpected error"
NOTHING_USABLE = "no usable modality"
CANNOT_STORE = "features cannot be stored"


class ExtractionError(HcmError):
    """Extraction stopped (``--strict`` problem, folder in use, encoders that do not reproduce a
    cache); the message says what to do."""


@dataclass
class Decoded:
    """One utterance after the decoding workers: prepared encoder inputs, masks, remarks.

    ``masked`` gives each masked modality's ``(reason, detail)``; ``failure`` (with its short
    ``failure_reason``) says why the utterance cannot be an item.
    """

    utterance: Any
    prepared: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    masked: dict[str, tuple[str, str]] = field(default_factory=dict)
    failure: str | None = None
    failure_reason: str = ""
    failure_detail: str = ""

    def mask(self, modality: str, reason: str, detail: str) -> None:
        """Mark ``modality`` absent for ``reason`` (``detail``: path, decoder message)."""
        self.masks[modality] = False
        self.masked[modality] = (reason, detail)
        self.notes[modality] = f"{reason}" + (f" ({detail})" if detail else "") + \
            f"; extracted with an empty {modality} mask"

    def fail(self, reason: str, detail: str) -> None:
        self.failure = f"{reason}: {detail}" if detail else reason
        self.failure_reason, self.failure_detail = reason, detail


@dataclass(frozen=True)
class MediaDecoder:
    """Picklable decoding job: reads an utterance's media once and runs every preparer on it.

    With ``keep_unreadable`` (extraction), a missing or undecodable medium masks the modalities it
    feeds and the utterance fails only when no modality is left; without it (one-clip prediction)
    such a medium fails the utterance. A row the reader rejected fails as it is.
    """

    n_frames: int
    preparers: tuple[tuple[str, Preparer], ...]
    keep_unreadable: bool = False

    def __call__(self, utterance: Any) -> Decoded:
        decoded = Decoded(utterance)
        dropped = getattr(utterance, "dropped", None)
        if dropped is not None:
            decoded.fail(*dropped)
            return decoded
        decoded.masks["text"] = True
        known = getattr(utterance, "masked", {})
        if "text" in known:
            decoded.mask("text", *known["text"])
        elif not (utterance.text or "").strip():
            decoded.mask("text", EMPTY_TRANSCRIPT, "")
        self._video(utterance, decoded)
        if decoded.failure is None:
            self._audio(utterance, decoded)
        if self.keep_unreadable and decoded.failure is None and not any(decoded.masks.get(m, True) for m in MODALITIES):
            decoded.fail(NOTHING_USABLE, "; ".join(f"{m}: {decoded.notes[m]}" for m in MODALITIES))
        return decoded

    def _video(self, utterance: Any, decoded: Decoded) -> None:
        wanted = [(name, p) for name, p in self.preparers if p.modality == "video"]
        if wanted:
            self._modality(utterance.video, "video", decoded, wanted, lambda ref: read_frames(ref, self.n_frames),
                           lambda frames, preparer: frames)

    def _audio(self, utterance: Any, decoded: Decoded) -> None:
        wanted = [(name, p) for name, p in self.preparers if p.modality == "audio"]
        if wanted:
            rates = tuple(dict.fromkeys(p.sample_rate for _, p in wanted))
            self._modality(utterance.audio, "audio", decoded, wanted, lambda ref: read_audio_rates(ref, rates),
                           lambda waves, preparer: waves[preparer.sample_rate])

    def _modality(self, ref: Any, modality: str, decoded: Decoded, wanted: list[tuple[str, Preparer]],
                  read: Any, media_for: Any) -> None:
        """Read ``ref`` and run each preparer on its media; a problem masks ``modality`` (or fails the item)."""
        if ref is None:
            decoded.mask(modality, NO_SOURCE, f"the dataset gives no {modality} file")
            return
        try:
            media = read(ref)
            prepared = {name: np.ascontiguousarray(preparer(media_for(media, preparer))) for name, preparer in wanted}
        except MediaError as err:
            if err.reason in MASKING_REASONS or self.keep_unreadable:
                specifics = err.reason[len(err.kind):].lstrip(": ")
                decoded.mask(modality, err.kind, ref.describe() + (
                    f": {specifics}" if specifics and specifics != str(ref.path) else ""))
            else:
                decoded.fail(err.kind, f"{modality} {ref.describe()}: {err.reason}")
            return
        except Exception as exc:  # a preparer bug or odd media must not stop the extraction
            detail = f"{type(exc).__name__} while decoding {ref.describe()}: {exc}"
            if self.keep_unreadable:
                decoded.mask(modality, UNEXPECTED, detail)
            else:
                decoded.fail(UNEXPECTED, detail)
            return
        decoded.masks[modality] = True
        decoded.prepared.update(prepared)  # stored C-contiguous (see ``Preparer``)


def _init_worker() -> None:
    """A decoding process uses one core: torch, OpenBLAS and OpenMP each default to one thread
    per core, and on a busy machine those threads wait on each other (decoding took twice as
    long here with them). Ctrl-C is the main process's to handle (it stops the pool): a worker
    ignores SIGINT instead of printing a KeyboardInterrupt traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    threadpool_limits(1)
    # What the preparers import on first use, imported here while the main process builds the
    # encoders: librosa's lazily loaded spectral module compiles numba kernels (a worker's first
    # clip took 1.3 s without this).
    from librosa.feature import melspectrogram  # noqa: F401
    from PIL import Image  # noqa: F401


@contextmanager
def inference_threads(device: torch.device) -> Iterator[None]:
    """On the CPU, inference takes the cores the default decoding workers leave (at least one).

    Decoding hides behind inference only when both have cores of their own; torch's default of
    one thread per core makes them take turns on the same cores. The count follows the machine,
    not ``--workers``: torch's CPU results change in the last bits with the thread count, and a
    cache must not depend on how many decoding processes made it.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    threads = max(1, min(previous, (os.cpu_count() or 1) - default_workers(device)))
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):  # numpy's BLAS (spaCy's parser) and OpenMP likewise
            yield
    finally:
        torch.set_num_threads(previous)


def decode_stream(decoder: MediaDecoder, utterances: Iterable[Any], pool: Any, prefetch: int) -> Iterator[Decoded]:
    """Decoded utterances in order; with a pool, at most ``prefetch`` are in flight or waiting."""
    if pool is None:
        yield from map(decoder, utterances)
        return
    source = iter(utterances)
    pending = deque(pool.apply_async(decoder, (u,)) for u in islice(source, prefetch))
    while pending:
        result = pending.popleft().get()
        pending.extend(pool.apply_async(decoder, (u,)) for u in islice(source, 1))
        yield result


def shard_assignment(num_shards: int | None, shard_index: int | None,
                     environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``(N, I)``: explicit options, else a SLURM array, else torchrun's WORLD_SIZE/RANK, else (1, 0)."""
    if num_shards is None and shard_index is None:
        if "SLURM_ARRAY_TASK_COUNT" in environ and "SLURM_ARRAY_TASK_ID" in environ:
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
            num_shards = int(environ["SLURM_ARRAY_TASK_COUNT"])
            shard_index = int(environ["SLURM_ARRAY_TASK_ID"]) - first
        elif "WORLD_SIZE" in environ and "RANK" in environ:
            num_shards, shard_index = int(environ["WORLD_SIZE"]), int(environ["RANK"])
    num_shards = 1 if num_shards is None else num_shards
    shard_index = 0 if shard_index is None else shard_index
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(
            f"shard index {shard_index} of {num_shards} workers is out of range: "
            f"--shard-index must be in [0, --num-shards)"
        )
    return num_shards, shard_index


@dataclass
class ExtractSummary:
    """What one ``extract`` call did, and what the whole cache holds after it.

    ``planned`` = ``extracted`` + ``len(dropped)`` + ``pending`` (items of shards no process
    has written yet); ``dropped`` and ``masked`` are the manifest's lists.
    """

    dataset: str
    profile: str
    out: Path
    precision: str = ""  # the encoders' precision (float32, bfloat16, float16)
    planned: int = 0
    shards_total: int = 0
    shards_mine: int = 0
    shards_resumed: int = 0
    shards_by_others: int = 0  # completed by another process while this one encoded them
    extracted: int = 0
    pending: int = 0
    dropped: list[dict] = field(default_factory=list)  # {id, split, reason, detail}
    masked: list[dict] = field(default_factory=list)  # {id, split, modality, reason, detail}
    truncated: int = 0  # items of this run whose text was cut to the encoder's window
    repaired: int = 0  # items of this run whose text needed decoding repair (invalid UTF-8)
    split_file: Path | None = None
    left_out: int = 0  # dataset items the split file does not list
    seconds: float = 0.0
    encoder_seconds: float = 0.0  # inside encoders (inference)
    loop_seconds: float = 0.0  # decoding + encoding + writing, after setup
    processed: int = 0  # utterances this run decoded and encoded (the shards it had to write)
    cache_bytes: int = 0

    def format(self, show: int = 20) -> str:
        """A few lines for the terminal."""
        rate = self.processed / self.loop_seconds if self.loop_seconds > 0 else 0.0  # start-up excluded
        timing = (f"start-up {self.seconds - self.loop_seconds:.1f} s, then {rate:.1f} items/s; encoders "
                  f"{self.encoder_seconds:.1f} s" if self.processed else "nothing left to extract in this worker's shards")
        n_masked = len({entry["id"] for entry in self.masked})
        lines = [
            f"{self.dataset} ({self.profile}, {self.precision}): plan {self.planned} = {self.extracted} "
            f"extracted + "
            f"{len(self.dropped)} dropped" + (f" + {self.pending} in shards not written yet" if self.pending else "")
            + f"; {n_masked} extracted with a masked modality; {self.seconds:.1f} s ({timing})",
            f"this run: {self.truncated} texts truncated, {self.repaired} texts with invalid UTF-8 repaired",
            f"shards: {self.shards_mine - self.shards_resumed - self.shards_by_others} written, "
            f"{self.shards_resumed} already complete, " + (f"{self.shards_by_others} written by another process, "
                                                            if self.shards_by_others else "")
            + f"{self.shards_mine} of {self.shards_total} assigned to this worker",
            f"cache: {self.out} ({self.cache_bytes / 2**20:.1f} MiB)",
        ]
        if self.split_file is not None:
            lines.append(f"split file: {self.split_file}; {self.left_out} dataset items not in it left out")
        for title, entries, key in (("dropped", self.dropped, ("reason",)),
                                    ("masked", self.masked, ("modality", "reason"))):
            counts = Counter(" / ".join(entry[name] for name in key) for entry in entries)
            if counts:
                lines.append(f"{title}: " + ", ".join(f"{what} {n}" for what, n in counts.most_common()))
                lines += [f"  - {entry['id']}: {' / '.join(entry[name] for name in key)}"
                          + (f" ({entry['detail']})" if entry.get("detail") else "") for entry in entries[:show]]
                if len(entries) > show:
                    lines.append(f"  ... and {len(entries) - show} more (hcm cache info {self.out} --verbose)")
        return "\n".join(lines)


def _directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*") if path.is_file())


@dataclass
class _Run:
    """The fixed parts of one extraction that the shard loop needs."""

    encoders: list[Encoder]
    writer: CacheWriter
    batch_size: int
    strict: bool
    summary: ExtractSummary
    frames: int  # frames sampled per clip
    workers: int  # decoding processes (0: in this process)


def _check_strict(run: _Run, decoded: Decoded) -> None:
    if not run.strict:
        return
    item_id = decoded.utterance.id
    if decoded.failure is not None and decoded.failure_reason != EXCLUDED_CLASS:
        raise ExtractionError(f"--strict: {item_id}: {decoded.failure}. Without --strict this item is "
                              f"dropped and recorded in the manifest's failures.")
    reader_masked = getattr(decoded.utterance, "masked", {})
    for modality in MODALITIES:
        if modality in decoded.masked and (modality != "text" or modality in reader_masked):
            raise ExtractionError(f"--strict: {item_id}: {decoded.notes[modality]}. Without --strict the item "
                                  f"is kept with an empty {modality} mask and the reason recorded.")


def encode_batch(batch: Sequence[Decoded], encoders: Sequence[Encoder]) -> tuple[list[Item], float]:
    """Items of a batch of decoded utterances, and the seconds spent inside encoders."""
    items = [_new_item(d) for d in batch]
    spent = 0.0
    for encoder in encoders:
        present = [i for i, d in enumerate(batch) if d.masks.get(encoder.modality, True)]
        started = time.perf_counter()
        outputs = encoder.encode([batch[i].utterance for i in present],
                                 [batch[i].prepared.get(encoder.name) for i in present]) if present else []
        spent += time.perf_counter() - started
        for i, output in zip(present, outputs):
            items[i].features.update(output.features)
            items[i].notes.update(output.notes)
        for i in sorted(set(range(len(batch))) - set(present)):
            items[i].features.update(encoder.empty())
    return items, spent


def _new_item(decoded: Decoded) -> Item:
    u = decoded.utterance
    masks = {m: decoded.masks[m] for m in MODALITIES if m in decoded.masks}
    return Item(id=u.id, split=u.split, label=u.label, labels=dict(u.labels), text=u.text or "", group=u.group,
                position=u.position, masks=masks, notes={**getattr(u, "notes", {}), **decoded.notes})


def _masked(decoded: Decoded) -> list[Masked]:
    u = decoded.utterance
    return [Masked(u.id, u.split, modality, reason, detail) for modality, (reason, detail) in decoded.masked.items()]


def _write_shard(run: _Run, k: int, decoded: Iterator[Decoded], count: int, advance: Any) -> None:
    """Encode the ``count`` utterances of shard ``k`` from ``decoded`` and write the shard."""
    items: list[Item] = []
    failures: list[Failure] = []
    kept: list[Decoded] = []
    batch: list[Decoded] = []
    for position in range(count):
        entry = next(decoded)
        _check_strict(run, entry)
        if entry.failure is not None:
            u = entry.utterance
            failures.append(Failure(u.id, entry.failure_reason, u.split, entry.failure_detail))
            advance(1)
        else:
            batch.append(entry)
        if batch and (len(batch) == run.batch_size or position == count - 1):
            made, spent = encode_batch(batch, run.encoders)
            run.summary.encoder_seconds += spent
            items += made
            kept += batch
            advance(len(batch))
            batch = []
    stored, masked = [], []
    for item, entry in zip(items, kept):
        try:
            run.writer.validate(item)
        except CacheError as exc:
            failures.append(Failure(item.id, CANNOT_STORE, item.split, str(exc)))
            continue
        stored.append(item)
        masked += _masked(entry)
    if run.writer.write_shard_once(k, stored, failures, masked):
        run.summary.truncated += sum("truncated" in item.notes for item in stored)
        run.summary.repaired += sum("text_repair" in item.notes for item in stored)
    else:
        run.summary.shards_by_others += 1


def build_encoders(profile: Profile, weights: ResolvedWeights, device: torch.device,
                   precision: str = "float32") -> list[Encoder]:
    """Every encoder of ``profile``, in the profile's order, running in ``precision``."""
    return [create_encoder(name, profile, weights, device, precision) for name in profile.encoders]


def cache_meta(adapter: Any, profile: Profile, weights: ResolvedWeights, encoders: Sequence[Encoder], plan: dict,
               shard_size: int, precision: str) -> CacheMeta:
    """The cache metadata; ``recipe`` holds everything that decides the numbers: weights by content,
    the encoders' ``precision``."""
    features: list[FeatureSpec] = [spec for encoder in encoders for spec in encoder.outputs]
    recipe = {"hcm_version": __version__, "dataset": adapter.name, "plan": plan, "profile": profile.recipe(),
              "weights": weights_recipe(profile, weights), "precision": precision}
    return CacheMeta(dataset=adapter.name, profile=profile.name, task=adapter.task, classes=adapter.classes,
                     recipe=recipe, features=features, shard_size=shard_size)


def default_workers(device: torch.device) -> int:
    """Decoding processes when ``--workers`` is not given.

    On a GPU decoding is the CPU's only job: one process per spare core, at most 8. On the CPU
    the encoders need the cores too: a quarter of them decode (at least one).
    """
    cores = os.cpu_count() or 2
    if device.type == "cpu":
        return max(1, cores // 4)
    return max(1, min(8, cores - 1))


def _pool(stack: ExitStack, workers: int) -> Any:
    """A decoding pool started before any model exists (forked children inherit no thread pools)."""
    if workers <= 0:
        return None
    method = "fork" if sys.platform == "linux" else "spawn"
    return stack.enter_context(multiprocessing.get_context(method).Pool(workers, initializer=_init_worker))


def extract(dataset: str, data_root: Path | None = None, out: Path | None = None, profile: str | Profile | None = None, *,
            workspace: Workspace | None = None, device: str = "auto", weights: WeightOptions | None = None,
            frames: int | None = None, segments: int | None = None, spacy_model: str | None = None,
            batch_size: int = 16, workers: int | None = None, limit: int | None = None,
            splits: list[str] | None = None, split_file: Path | None = None, num_shards: int | None = None,
            shard_index: int | None = None, shard_size: int = 1000, strict: bool = False,
            progress: bool = True, precision: str = "auto") -> ExtractSummary:
    """Extract ``dataset`` into a feature cache at ``out`` (see the module docstring).

    Args:
        dataset: ``sample``, ``mosei``, ``meld`` or ``iemocap``.
        data_root: raw dataset root (default: the adapter's root in the workspace).
        out: cache folder (default ``<workspace>/features/<dataset>/<profile>``).
        profile: ``tiny`` or ``paper`` (default ``tiny`` for ``sample``, else ``paper``), or a
            :class:`Profile` (``frames``, ``segments`` and ``spacy_model`` then do not apply).
        workers: decoding processes (0 decodes in this process).
        limit: extract only the first ``limit`` planned utterances.
        split_file: CSV ``id,split`` replacing the dataset's splits; unlisted items are left out.
        precision: the encoders' arithmetic, ``auto``, ``float32``, ``bfloat16`` or ``float16``
            (``hcm.pipeline.encoders.precision``); ``auto`` resumes a cache in its own precision.
    """
    started = time.perf_counter()
    workspace = workspace or Workspace.resolve()
    adapter = get_dataset(dataset)
    dataset = adapter.name
    root = Path(data_root) if data_root is not None else adapter.default_root(workspace)
    adapter.check_root(root)
    given_split = SplitFile.read(split_file) if split_file is not None else None  # bad files fail first
    chosen = profile if isinstance(profile, Profile) else get_profile(
        profile or ("tiny" if dataset == "sample" else "paper"), frames, segments, spacy_model)
    resolved = resolve_weights(chosen, weights or WeightOptions())
    n_workers, my_index = shard_assignment(num_shards, shard_index)
    if batch_size < 1 or shard_size < 1 or (limit is not None and limit < 0):
        raise UsageError("--batch-size and --shard-size must be at least 1 and --limit at least 0")
    check_choice(precision)
    selection = adapter.select(root, splits, given_split, rejected=True)
    utterances = selection.utterances[:limit]
    out = Path(out) if out is not None else workspace.features_dir(dataset, chosen.name)
    summary = ExtractSummary(dataset, chosen.name, out, planned=len(utterances), split_file=split_file,
                             left_out=selection.left_out)
    prepare_directory(out)
    with ExitStack() as stack:
        stack.enter_context(exclusive_run(out, f"shards-{my_index}-of-{n_workers}"))
        chosen_device = resolve_device(device)
        summary.precision = choose_precision(precision, chosen_device, chosen.tiny, cached_precision(out))
        workers = default_workers(chosen_device) if workers is None else workers
        pool = _pool(stack, workers)
        encoders = build_encoders(chosen, resolved, chosen_device, summary.precision)
        stack.enter_context(inference_threads(chosen_device))
        plan = {"splits": sorted(splits) if splits else "all", "limit": limit, "n_planned": len(utterances),
                "split_file": given_split.recipe(selection.left_out) if given_split else None}
        writer = CacheWriter(out, cache_meta(adapter, chosen, resolved, encoders, plan, shard_size, summary.precision),
                             device=str(chosen_device))
        run = _Run(encoders, writer, batch_size, strict, summary, chosen.sampling.frames, workers)
        loop_started = time.perf_counter()
        _run_shards(run, utterances, shard_size, (n_workers, my_index), pool, progress)
        summary.loop_seconds = time.perf_counter() - loop_started
        writer.finalize(len(utterances))
    _tally(summary, load_manifest(out, save=False))
    summary.seconds = time.perf_counter() - started
    summary.cache_bytes = _directory_bytes(out)
    return summary


def cached_precision(out: Path) -> str | None:
    """The precision of the cache already in ``out`` (``None``: no cache there yet)."""
    manifest = read_manifest(out)
    return recipe_precision(manifest.get("recipe") or {}) if manifest else None


def _tally(summary: ExtractSummary, manifest: dict) -> None:
    """The cache's totals (every worker's shards, resumed ones included) into ``summary``."""
    summary.extracted = manifest["n_items"]
    summary.dropped = manifest["failures"]
    summary.masked = manifest["masked"]
    summary.pending = summary.planned - summary.extracted - len(summary.dropped)


def _run_shards(run: _Run, utterances: Sequence[Any], shard_size: int, assignment: tuple[int, int],
                pool: Any, progress: bool) -> None:
    """Encode and write every shard of this worker that is not already complete."""
    n_workers, my_index = assignment
    total = -(-len(utterances) // shard_size)
    mine = [k for k in range(total) if k % n_workers == my_index]
    todo = [k for k in mine if not run.writer.shard_done(k)]
    run.summary.shards_total, run.summary.shards_mine = total, len(mine)
    run.summary.shards_resumed = len(mine) - len(todo)
    spans = {k: utterances[k * shard_size:(k + 1) * shard_size] for k in todo}
    run.summary.processed = sum(map(len, spans.values()))
    preparers = tuple((e.name, e.preparer) for e in run.encoders if e.preparer is not None)
    decoder = MediaDecoder(run.frames, preparers, keep_unreadable=True)
    queue = (u for k in todo for u in spans[k])
    # The workers decode the next batch while the encoders run on this one: a batch in flight
    # plus a few clips per worker (with only the few, decoding waited during inference).
    prefetch = run.batch_size + PREFETCH_PER_WORKER * max(1, run.workers)
    stream = decode_stream(decoder, queue, pool, prefetch)
    with progress_bar(progress, "{task.fields[rate]}", eta=True) as bar:
        task = bar.add_task(f"extract {run.summary.dataset}", total=sum(map(len, spans.values())), rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:.1f} items/s" if speed else "")

        for k in todo:
            _write_shard(run, k, stream, len(spans[k]), advance)


def extract_command(workspace: Workspace, splits: str | None = None, quiet: bool = False, **options: Any) -> int:
    """``hcm extract``: run :func:`extract`, print the summary or a clear error, return the exit code.

    Exit codes: 0 done, 1 stopped (``--strict`` problem, cache of another recipe or other weights),
    2 bad input (dataset root, missing weights or parser, bad option, unreadable or unwritable folder).
    """
    chosen = [s.strip() for s in splits.split(",") if s.strip()] if splits else None

    def work() -> None:
        try:
            summary = extract(workspace=workspace, splits=chosen, progress=not quiet, **options)
        except HcmError:
            raise
        except OSError as error:  # an unreadable data root, a folder that cannot be written
            where = f" ({error.filename})" if error.filename else ""
            raise UsageError(f"{error.strerror or error}{where}. Check that the path exists and this user may read "
                             f"(data root) or write (workspace, --out) it.") from error
        except ValueError as error:  # a reader's or loader's message about the user's input
            raise UsageError(str(error)) from error
        print(summary.format())

    return report_errors(work, interrupted=INTERRUPTED)


#: What ``hcm extract`` says on Ctrl-C.
INTERRUPTED = "interrupted; complete shards are kept: run the same command again to continue"


class ClipError(UsageError):
    """A clip that cannot be used at all (missing, not a file, undecodable)."""


@dataclass(frozen=True)
class ClipInput:
    """One clip outside any dataset: the file, its transcript (``None`` masks the text) and the
    utterances around it (RoBERTa's context window, as the dataset readers give it in training)."""

    clip: Path
    text: str | None = None
    context_before: tuple[str, ...] = ()
    context_after: tuple[str, ...] = ()


class ClipExtractor:
    """Stage one for clips outside any dataset: the profile's encoders are built once, then each call
    turns a batch of clips into the items ``hcm extract`` would write (same decoding, encoders, masks).

    Args:
        profile: a profile or its name (``tiny``, ``paper``).
        weights: where the profile's weight files are.
        device: ``auto``, ``cpu``, ``cuda``.
        like: a cache whose features the items must match: every encoder's weights (by content)
            and streams must be that cache's, otherwise :class:`ExtractionError` names the encoder.
        precision: the encoders' arithmetic; ``auto`` takes the precision of ``like`` when the
            device runs it (else the device's default, see ``hcm.pipeline.encoders.precision``).
            When the precision differs from that of ``like``, ``notes`` says so (and a warning is
            logged): the features then differ from the cache's by up to the documented tolerance.
    """

    def __init__(self, profile: Profile | str = "tiny", *, weights: WeightOptions | None = None,
                 device: str = "auto", like: CacheMeta | None = None, precision: str = "auto") -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        check_choice(precision)
        resolved = resolve_weights(self.profile, weights or WeightOptions())
        if like is not None:
            _check_weights(like, weights_recipe(self.profile, resolved))
        self.device = resolve_device(device)
        cached = recipe_precision(like.recipe) if like is not None else None
        self.precision = choose_precision(precision, self.device, self.profile.tiny, cached)
        self.notes: list[str] = []  # remarks every item of this extractor shares
        if cached is not None and cached != self.precision:
            self.notes.append(mismatch_note(cached, self.precision, self.device))
            log.warning("%s", self.notes[-1])
        self.encoders = build_encoders(self.profile, resolved, self.device, self.precision)
        if like is not None:
            check_streams(self.encoders, like)
        self.label: float | int = 0 if like is not None and like.task == CLASSIFICATION else 0.0
        preparers = tuple((e.name, e.preparer) for e in self.encoders if e.preparer is not None)
        self.decoder = MediaDecoder(self.profile.sampling.frames, preparers)

    def __call__(self, clips: Sequence[ClipInput]) -> list[Item | ClipError]:
        """One item per clip, in order; a clip that cannot be used at all gives its :class:`ClipError`."""
        results: list[Item | ClipError] = []
        decoded = []
        for given in clips:
            try:
                results.append(self._decode(given))
                decoded.append(results[-1])
            except ClipError as error:
                results.append(error)
        with inference_threads(self.device):
            items = iter(encode_batch(decoded, self.encoders)[0]) if decoded else iter(())
        return [result if isinstance(result, ClipError) else next(items) for result in results]

    def _decode(self, given: ClipInput) -> Decoded:
        clip = Path(given.clip)
        check_clip(clip)
        ref = MediaRef(clip)
        utterance = Utterance(id=clip.stem, split="test", label=self.label, labels={}, text=given.text or "",
                              group=clip.stem, position=0, video=ref, audio=ref,
                              context_before=list(given.context_before), context_after=list(given.context_after))
        decoded = self.decoder(utterance)
        if decoded.failure is not None:
            raise ClipError(f"cannot use clip {clip}: {decoded.failure}")
        return decoded


def extract_clip(clip: Path, text: str | None = None, profile: Profile | str = "tiny", *,
                 context: tuple[Sequence[str], Sequence[str]] = ((), ()), weights: WeightOptions | None = None,
                 device: str = "auto", like: CacheMeta | None = None, precision: str = "auto") -> Item:
    """The cache item ``hcm extract`` would write for one clip (:class:`ClipExtractor` for one clip).

    ``context``: the utterances before and after the clip; ``precision`` as in :class:`ClipExtractor`.
    Raises :class:`ClipError` when the clip is missing or none of its media can be read.
    """
    check_clip(Path(clip))
    extractor = ClipExtractor(profile, weights=weights, device=device, like=like, precision=precision)
    (result,) = extractor([ClipInput(Path(clip), text, tuple(context[0]), tuple(context[1]))])
    if isinstance(result, ClipError):
        raise result
    return result


def check_clip(clip: Path) -> None:
    """Refuse a clip path that is not a file (:class:`ClipError`)."""
    if not clip.is_file():
        what = "is not a file" if clip.exists() else "does not exist"
        raise ClipError(f"clip {clip} {what}; give the path of one video (e.g. .mp4) or audio file")


def _check_weights(meta: CacheMeta, weights: dict) -> None:
    changed = weight_changes(meta.recipe, {"weights": weights})
    if changed:
        raise ExtractionError(f"the weights found now are not the ones the cache was extracted with: "
                              f"{'; '.join(changed)}; pass the weight files of that extraction (--weights-dir)")


def check_streams(encoders: Sequence[Encoder], meta: CacheMeta) -> None:
    """Refuse encoders whose streams (shape, dtype, weights, settings) differ from the cache's."""
    made = {spec.name: spec.to_dict() for encoder in encoders for spec in encoder.outputs}
    cached = {spec.name: spec.to_dict() for spec in meta.features}
    differing = sorted(name for name in set(made) | set(cached) if made.get(name) != cached.get(name))
    if differing:
        encoders_named = sorted({(made.get(n) or cached.get(n))["encoder"] for n in differing})
        raise ExtractionError(f"the encoders {encoders_named} built now do not reproduce the cache's streams "
                              f"{differing}; extract with the settings and weights of that cache")
