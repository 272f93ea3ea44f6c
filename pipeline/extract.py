"""``hcm extract``: raw dataset -> feature cache, with batching, worker decoding, resume and shards.

Flow of one extraction::

    adapter.utterances() -> plan (dataset order, optional --limit) -> shards of shard_size positions
    worker processes: MediaDecoder (read frames/audio, per-encoder preparation)   [bounded prefetch]
    main process: per shard, batches of --batch-size through every encoder -> Items -> CacheWriter

The decoding workers and ``encode_batch`` are in ``hcm.pipeline.decoding``; the shard loop
(which shards are left, progress, shard counts), shared with the importers, in
``hcm.pipeline.shards``.

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

``hcm.pipeline.clip.extract_clip`` runs one clip (and its transcript) through the same decoder,
preparers and encoders and returns the ``Item`` an extraction would write (``hcm predict`` uses it).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from hcm import __version__
from hcm.cache import CacheMeta, CacheWriter, Failure, FeatureSpec, Item, Masked
from hcm.cache.manifest import load_manifest, read_manifest
from hcm.cache.schema import recipe_precision
from hcm.cache.writer import exclusive_run, prepare_directory
from hcm.core.device import resolve_device
from hcm.core.errors import HcmError, UsageError
from hcm.core.names import MODALITIES
from hcm.core.workspace import Workspace
from hcm.pipeline.datasets import SplitFile, get_dataset
from hcm.pipeline.datasets.base import EXCLUDED_CLASS
from hcm.pipeline.datasets.language import text_choices
from hcm.pipeline.decoding import (
    PREFETCH_PER_WORKER,
    Decoded,
    MediaDecoder,
    decode_stream,
    decoding_pool,
    default_workers,
    encode_batch,
    inference_threads,
)
from hcm.pipeline.encoders.base import Encoder, SharedModels, create_encoder
from hcm.pipeline.encoders.precision import check_choice, choose_precision
from hcm.pipeline.profiles import Profile, ResolvedWeights, WeightOptions, get_profile, resolve_weights, weights_recipe
from hcm.pipeline.shards import ShardCounts, ShardLoop, shard_assignment, storable

log = logging.getLogger(__name__)


class ExtractionError(HcmError):
    """Extraction stopped (``--strict`` problem, folder in use, encoders that do not reproduce a
    cache); the message says what to do."""


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
    shards: ShardCounts = field(default_factory=ShardCounts)
    extracted: int = 0
    pending: int = 0
    dropped: list[dict] = field(default_factory=list)  # {id, split, reason, detail}
    masked: list[dict] = field(default_factory=list)  # {id, split, modality, reason, detail}
    truncated: int = 0  # items of this run whose text was cut to the encoder's window
    repaired: int = 0  # items of this run whose text needed decoding repair (invalid UTF-8)
    split_file: Path | None = None
    left_out: int = 0  # dataset items the split file does not list
    remarks: list[str] = field(default_factory=list)  # the reader's and language choice's remarks
    seconds: float = 0.0
    encoder_seconds: float = 0.0  # inside encoders (inference)
    loop_seconds: float = 0.0  # decoding + encoding + writing, after setup
    processed: int = 0  # utterances this run decoded and encoded (the shards it had to write)
    cache_bytes: int = 0

    def format(self, show: int = 20) -> str:
        """A few lines for the terminal."""
        rate = self.processed / self.loop_seconds if self.loop_seconds > 0 else 0.0  # start-up excluded
        timing = (f"start-up {self.seconds - self.loop_seconds:.1f} s, then {rate:.1f} items/s; encoders "
                  f"{self.encoder_seconds:.1f} s" if self.processed
                  else "nothing left to extract in this worker's shards")
        n_masked = len({entry["id"] for entry in self.masked})
        lines = [
            f"{self.dataset} ({self.profile}, {self.precision}): plan {self.planned} = {self.extracted} "
            f"extracted + "
            f"{len(self.dropped)} dropped" + (f" + {self.pending} in shards not written yet" if self.pending else "")
            + f"; {n_masked} extracted with a masked modality; {self.seconds:.1f} s ({timing})",
            f"this run: {self.truncated} texts truncated, {self.repaired} texts with invalid UTF-8 repaired",
            f"shards: {self.shards.done()}, " + (f"{self.shards.by_others} written by another process, "
                                                 if self.shards.by_others else "")
            + f"{self.shards.mine} of {self.shards.total} assigned to this worker",
            f"cache: {self.out} ({self.cache_bytes / 2**20:.1f} MiB)",
            *(f"{self.dataset}: {remark}" for remark in self.remarks),
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


def _masked(decoded: Decoded) -> list[Masked]:
    u = decoded.utterance
    return [Masked(u.id, u.split, modality, reason, detail) for modality, (reason, detail) in decoded.masked.items()]


def _write_shard(run: _Run, k: int, decoded: Iterator[Decoded], count: int, advance: Any) -> bool:
    """Encode the ``count`` utterances of shard ``k`` from ``decoded`` and write the shard; False when
    another process wrote it meanwhile."""
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
    stored, refused = storable(run.writer, items)
    failures += refused
    stored_ids = {item.id for item in stored}
    masked = [m for entry in kept if entry.utterance.id in stored_ids for m in _masked(entry)]
    if not run.writer.write_shard_once(k, stored, failures, masked):
        return False
    run.summary.truncated += sum("truncated" in item.notes for item in stored)
    run.summary.repaired += sum("text_repair" in item.notes for item in stored)
    return True


def build_encoders(profile: Profile, weights: ResolvedWeights, device: torch.device,
                   precision: str = "float32") -> list[Encoder]:
    """Every encoder of ``profile``, in the profile's order, running in ``precision``; encoders that
    use one network (CLIP's image and text encoders) get the same loaded copy."""
    shared = SharedModels()
    return [create_encoder(name, profile, weights, device, precision, shared) for name in profile.encoders]


def cache_meta(adapter: Any, profile: Profile, weights: ResolvedWeights, encoders: Sequence[Encoder], plan: dict,
               shard_size: int, precision: str) -> CacheMeta:
    """The cache metadata; ``recipe`` holds everything that decides the numbers: weights by content,
    the encoders' ``precision``."""
    features: list[FeatureSpec] = [spec for encoder in encoders for spec in encoder.outputs]
    recipe = {"hcm_version": __version__, "dataset": adapter.name, "plan": plan, "profile": profile.recipe(),
              "weights": weights_recipe(profile, weights), "precision": precision, **adapter.recipe()}
    return CacheMeta(dataset=adapter.name, profile=profile.name, task=adapter.task, classes=adapter.classes,
                     recipe=recipe, features=features, shard_size=shard_size)


def extract(dataset: str, data_root: Path | None = None, out: Path | None = None,
            profile: str | Profile | None = None, *,
            workspace: Workspace | None = None, device: str = "auto", weights: WeightOptions | None = None,
            frames: int | None = None, segments: int | None = None, spacy_model: str | None = None,
            batch_size: int = 16, workers: int | None = None, limit: int | None = None,
            splits: list[str] | None = None, split_file: Path | None = None, num_shards: int | None = None,
            shard_index: int | None = None, shard_size: int = 1000, strict: bool = False,
            progress: bool = True, precision: str = "auto",
            dataset_options: Mapping[str, Any] | None = None) -> ExtractSummary:
    """Extract ``dataset`` into a feature cache at ``out`` (see the module docstring).

    Args:
        dataset: a registered dataset (``sample``, ``mosei``, ``meld``, ``iemocap``, ``mosi``, ``sims``,
            ``simsv2``, ``custom``).
        data_root: raw dataset root (default: the adapter's root in the workspace).
        out: cache folder (default ``<workspace>/features/<dataset>/<profile>``).
        profile: ``tiny`` or ``paper`` (default ``tiny`` for ``sample``, else ``paper``), or a
            :class:`Profile` (``frames``, ``segments`` and ``spacy_model`` then do not apply).
        workers: decoding processes (0 decodes in this process).
        limit: extract only the first ``limit`` planned utterances.
        split_file: CSV ``id,split`` replacing the dataset's splits; unlisted items are left out.
        precision: the encoders' arithmetic, ``auto``, ``float32``, ``bfloat16`` or ``float16``
            (``hcm.pipeline.encoders.precision``); ``auto`` resumes a cache in its own precision.
        dataset_options: ``label_range``, ``classes``, ``split_seed`` (``custom`` only).
    """
    started = time.perf_counter()
    workspace = workspace or Workspace.resolve()
    adapter = get_dataset(dataset)
    dataset = adapter.name
    root = Path(data_root) if data_root is not None else adapter.default_root(workspace)
    adapter.check_root(root)
    adapter.configure(dataset_options or {}, root)
    given_split = SplitFile.read(split_file) if split_file is not None else None  # bad files fail first
    name = profile.name if isinstance(profile, Profile) else profile or ("tiny" if dataset == "sample" else "paper")
    spacy_model, weights, remarks = text_choices(adapter, spacy_model, weights, name == "tiny")
    chosen = profile if isinstance(profile, Profile) else get_profile(name, frames, segments, spacy_model)
    resolved = resolve_weights(chosen, weights or WeightOptions())
    n_workers, my_index = shard_assignment(num_shards, shard_index)
    if batch_size < 1 or shard_size < 1 or (limit is not None and limit < 0):
        raise UsageError("--batch-size and --shard-size must be at least 1 and --limit at least 0")
    check_choice(precision)
    selection = adapter.select(root, splits, given_split, rejected=True)
    utterances = selection.utterances[:limit]
    out = Path(out) if out is not None else workspace.features_dir(dataset, chosen.name)
    summary = ExtractSummary(dataset, chosen.name, out, planned=len(utterances), split_file=split_file,
                             left_out=selection.left_out, remarks=remarks + adapter.report())
    prepare_directory(out)
    with ExitStack() as stack:
        stack.enter_context(exclusive_run(out, f"shards-{my_index}-of-{n_workers}"))
        chosen_device = resolve_device(device)
        summary.precision = choose_precision(precision, chosen_device, chosen.tiny, cached_precision(out))
        workers = default_workers(chosen_device) if workers is None else workers
        pool = decoding_pool(stack, workers)
        encoders = build_encoders(chosen, resolved, chosen_device, summary.precision)
        stack.enter_context(inference_threads(chosen_device))
        plan = {"splits": sorted(splits) if splits else "all", "limit": limit, "n_planned": len(utterances),
                "split_file": given_split.recipe(selection.left_out) if given_split else None}
        writer = CacheWriter(out, cache_meta(adapter, chosen, resolved, encoders, plan, shard_size, summary.precision),
                             device=str(chosen_device), source={"data_root": str(root.resolve())})
        run = _Run(encoders, writer, batch_size, strict, summary, chosen.sampling.frames, workers)
        loop_started = time.perf_counter()
        _run_shards(run, ShardLoop(utterances, shard_size, writer, (n_workers, my_index)), pool, progress)
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


def _run_shards(run: _Run, loop: ShardLoop, pool: Any, progress: bool) -> None:
    """Decode and encode every shard of this worker that is not already complete, and write it."""
    run.summary.shards = loop.counts
    run.summary.processed = loop.pending_total
    preparers = tuple((e.name, e.preparer) for e in run.encoders if e.preparer is not None)
    decoder = MediaDecoder(run.frames, preparers, keep_unreadable=True)
    # The workers decode the next batch while the encoders run on this one: a batch in flight
    # plus a few clips per worker (with only the few, decoding waited during inference).
    prefetch = run.batch_size + PREFETCH_PER_WORKER * max(1, run.workers)
    stream = decode_stream(decoder, loop.pending(), pool, prefetch)
    loop.run(lambda k, span, advance: _write_shard(run, k, stream, len(span), advance),
             f"extract {run.summary.dataset}", progress, rate=True)
