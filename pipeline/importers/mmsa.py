"""``hcm import mmsa``: an MMSA feature pickle -> an ordinary hcm feature cache.

What each field of the file becomes (docs/datasets.md has the full table):

- ``raw_text`` -> the profile's text streams (``roberta`` + ``roberta_current``/``token_word``/
  ``text_edges``, and ``clip_text`` for the English datasets), computed by the same encoders as
  ``hcm extract`` with the text context of the neighbouring clips of the same video (the id
  ``<video>$_$<clip>`` gives the video and the clip order, as for raw CMU-MOSEI);
- ``vision`` / ``audio`` -> streams ``mmsa_vision`` / ``mmsa_audio`` (float32), one node per
  usable row: unaligned files keep the first ``*_lengths`` rows; aligned files keep the rows
  from the first to the last row that is not all zeros (``aligned_rows="trim"``, the padding
  sits at one end) or every row (``"all"``). Non-finite values are set to 0, as MMSA's loader
  does, and counted per item in ``Item.notes``;
- ``regression_labels`` -> ``Item.label`` (float64, the stored values exactly); the other
  label keys -> ``Item.labels``; the file's split -> ``Item.split``; every id is kept.

A row that cannot be used (empty or repeated id, features the cache refuses) becomes a
``Failure`` with its reason in the manifest; a modality without usable rows is masked with the
reason in ``Item.notes``. The cache is written shard by shard through ``CacheWriter``, so a
re-run resumes, and ``hcm cache info/verify`` work on it as on any cache.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hcm import __version__
from hcm.cache import CacheMeta, CacheWriter, Failure, FeatureSpec, Item
from hcm.cache.writer import exclusive_run
from hcm.core.configs import configs_dir
from hcm.core.device import resolve_device
from hcm.core.errors import UsageError
from hcm.core.files import read_json_object
from hcm.core.names import REGRESSION, SPLITS
from hcm.core.workspace import Workspace
from hcm.pipeline.datasets.base import Utterance, order_groups
from hcm.pipeline.decoding import Decoded, encode_batch, inference_threads
from hcm.pipeline.encoders import image  # noqa: F401  (importing registers clip_text)
from hcm.pipeline.encoders.base import create_encoder
from hcm.pipeline.encoders.graph import ChainParser, ParserError, choose_parser
from hcm.pipeline.encoders.text import RobertaEncoder
from hcm.pipeline.importers.mmsa_datasets import MmsaDataset, mmsa_dataset
from hcm.pipeline.importers.mmsa_file import MmsaFile, MmsaSplit, read_mmsa_file, sequence_rows
from hcm.pipeline.profiles import MissingWeightsError, Profile, WeightOptions, get_profile, resolve_weights
from hcm.pipeline.shards import Advance, ShardCounts, ShardLoop, storable

log = logging.getLogger(__name__)
SOURCE_FORMAT = "mmsa"
MODALITY_OF = {"vision": "video", "audio": "audio"}  # MMSA key -> hcm modality
ALIGNED_ROWS = ("trim", "all")


def import_profile(name: str, info: MmsaDataset, text_model: str | None = None,
                   spacy_model: str | None = None) -> Profile:
    """The extraction profile ``name`` reduced to the text encoders, with the dataset's text model
    (paper profile) and parser, or the ones the user names."""
    try:
        profile = get_profile(name, spacy_model=spacy_model or info.spacy_model or None)
    except ValueError as error:
        raise UsageError(f"--profile: {error}") from error
    roberta = profile.settings["roberta"]
    model = text_model or (info.text_model if not roberta.tiny else None)
    roberta = replace(roberta, model=model) if model else roberta
    settings = {name: roberta if name == "roberta" else profile.settings[name] for name in info.text_encoders}
    return replace(profile, settings=settings)


def text_graph_parser(profile: Profile, info: MmsaDataset) -> tuple[Any, list[str]]:
    """``(None, [])`` when the profile's spaCy parser is installed, else the chain-graph fallback
    and its one-line warning (datasets with ``chain_fallback``) or a UsageError."""
    try:
        choose_parser(profile.parser)
        return None, []
    except ParserError as error:
        if not info.chain_fallback:
            raise UsageError(str(error)) from error
    wanted = profile.parser.model or "the default"
    warning = (f"spaCy pipeline {wanted!r} for {info.language} is not installed: text graphs are chains over "
               f"the words (each CJK character one word); install it (python -m spacy download {wanted}) and "
               f"re-import into a new folder for dependency graphs")
    log.warning(warning)
    return ChainParser(), [warning]


def build_text_encoders(profile: Profile, weights: Any, device: Any, parser: Any) -> list[Any]:
    """The profile's text encoders; RoBERTa gets ``parser`` (None: the profile's spaCy parser)."""
    return [RobertaEncoder.from_profile(profile, weights, device, parser) if name == "roberta"
            else create_encoder(name, profile, weights, device) for name in profile.encoders]


# --------------------------------------------------------------------------- the plan


@dataclass
class Planned:
    """One row of the file in plan order: its utterance, or why it cannot be imported."""

    split: str
    index: int
    utterance: Utterance | None
    failure: Failure | None = None


def plan_rows(data: MmsaFile) -> list[Planned]:
    """Every row in file order (train, valid, test); clips of one video get each other's text as context."""
    planned: list[Planned] = []
    seen: dict[str, str] = {}
    videos: dict[str, list[Utterance]] = defaultdict(list)
    for name in SPLITS:
        split = data.splits[name]
        for i, item_id in enumerate(split.ids):
            where = f"{name} row {i}"
            if not item_id.strip() or item_id in seen:
                reason = f"{where}: empty id" if not item_id.strip() else f"{where}: id already used by {seen[item_id]}"
                planned.append(Planned(name, i, None, Failure(item_id or f"<{where}>", reason, name)))
                continue
            seen[item_id] = where
            video, separator, _ = item_id.rpartition("$_$")
            utterance = Utterance(id=item_id, split=name, label=float(split.labels[i]),
                                  labels=dict(split.extra_labels[i]), text=split.texts[i],
                                  group=video if separator else item_id, position=0, video=None, audio=None)
            if separator:
                videos[video].append(utterance)
            planned.append(Planned(name, i, utterance))
    order_groups(videos)
    return planned


# --------------------------------------------------------------------------- metadata


def rows_rule(data: MmsaFile, aligned_rows: str) -> str:
    """How the node rows are chosen, as recorded in the recipe."""
    if not data.aligned:
        return "first *_lengths rows"
    return "first to last row that is not all zeros" if aligned_rows == "trim" else "all stored rows"


def import_meta(data: MmsaFile, info: MmsaDataset, profile: Profile, encoders: Sequence[Any], digest: str,
                aligned_rows: str, warnings: list[str], shard_size: int) -> CacheMeta:
    """The cache metadata; the recipe names the source file (and its sha256) and the stream mapping."""
    rule = rows_rule(data, aligned_rows)
    text_specs = [spec for encoder in encoders for spec in encoder.outputs]
    sequence_specs = [FeatureSpec(f"mmsa_{key}", (width,), "float32", encoder=SOURCE_FORMAT,
                                  weights=f"{data.path.name}:{digest[:12]}",
                                  config={"key": key, "rows": rule, "nonfinite": "set to 0"})
                      for key, width in data.dims.items()]
    streams = {"text": [encoder.name for encoder in encoders],
               **{MODALITY_OF[key]: [f"mmsa_{key}"] for key in data.dims}}
    recipe = {
        "hcm_version": __version__, "dataset": info.name,
        "source": {"format": SOURCE_FORMAT, "file": data.path.name, "sha256": digest, "aligned": data.aligned,
                   "rows": rule, "nonfinite": "set to 0 (as MMSA's loader does)"},
        "profile": profile.recipe(), "streams": streams, "warnings": warnings, "plan": {"n_planned": len(data)},
    }
    return CacheMeta(dataset=info.name, profile=f"{SOURCE_FORMAT}-{profile.name}", task=REGRESSION, classes=None,
                     recipe=recipe, features=[*text_specs, *sequence_specs], shard_size=shard_size)


# --------------------------------------------------------------------------- writing


@dataclass
class ImportSummary:
    """What one ``import_mmsa`` call did."""

    dataset: str
    profile: str
    source: Path
    out: Path
    aligned: bool
    planned: int = 0
    imported: int = 0
    shards: ShardCounts = field(default_factory=ShardCounts)
    masked: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    nonfinite: list[tuple[str, str]] = field(default_factory=list)  # (id, note)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def format(self, show: int = 10) -> str:
        """A few lines for the terminal."""
        kind = "aligned" if self.aligned else "unaligned"
        lines = [f"{self.dataset} from {self.source.name} ({kind}, profile {self.profile}): {self.imported} imported, "
                 f"{len(self.masked)} with a masked modality, {len(self.nonfinite)} with non-finite values set to 0, "
                 f"{len(self.skipped)} skipped; {self.seconds:.1f} s",
                 f"shards: {self.shards.done()}; plan {self.planned} items",
                 f"cache: {self.out}", *[f"warning: {w}" for w in self.warnings]]
        for title, entries in (("masked", self.masked), ("non-finite", self.nonfinite), ("skipped", self.skipped)):
            if entries:
                lines.append(f"{title}:")
                lines += [f"  - {item_id}: {reason}" for item_id, reason in entries[:show]]
                if len(entries) > show:
                    lines.append(f"  ... and {len(entries) - show} more (see {self.out}/manifest.json)")
        return "\n".join(lines)


@dataclass
class _Run:
    """The fixed parts of one import that the shard loop needs."""

    data: MmsaFile
    encoders: list[Any]
    writer: CacheWriter
    batch_size: int
    trim: bool
    summary: ImportSummary


def decode_row(split: MmsaSplit, planned: Planned, trim: bool) -> tuple[Any, dict[str, np.ndarray]]:
    """The row as extraction's ``Decoded`` (masks, notes) and its ``mmsa_*`` streams."""
    utterance = planned.utterance
    decoded = Decoded(utterance, masks={"text": bool(utterance.text.strip())})
    if not decoded.masks["text"]:
        decoded.notes["text"] = "empty raw_text; imported with an empty text mask"
    streams = {}
    for key, modality in MODALITY_OF.items():
        rows = sequence_rows(split, planned.index, key, trim)
        decoded.masks[modality] = not rows.problem
        if rows.problem:
            decoded.notes[modality] = f"{rows.problem}; imported with an empty {modality} mask"
        if rows.note:
            decoded.notes[f"{modality}_rows"] = rows.note
        if rows.nonfinite:
            decoded.notes[f"{key}_nonfinite"] = f"{rows.nonfinite} non-finite {key} values set to 0 (as MMSA does)"
        streams[f"mmsa_{key}"] = rows.values  # (n, d); no rows when the sequence is unusable
    return decoded, streams


def write_shard(run: _Run, k: int, entries: Sequence[Planned], advance: Advance) -> bool:
    """Encode the text of shard ``k``'s rows, add their sequences, write the shard (False: another
    process wrote it meanwhile)."""
    failures = [p.failure for p in entries if p.failure is not None]
    advance(len(failures))
    rows = [decode_row(run.data.splits[p.split], p, run.trim) for p in entries if p.utterance is not None]
    items: list[Item] = []
    for start in range(0, len(rows), run.batch_size):
        batch = rows[start:start + run.batch_size]
        made, _ = encode_batch([decoded for decoded, _ in batch], run.encoders)
        for item, (_, streams) in zip(made, batch):
            item.features.update(streams)
        items += made
        advance(len(batch))
    kept, refused = storable(run.writer, items)
    failures += refused
    if not run.writer.write_shard_once(k, kept, failures):
        return False
    _count(run.summary, kept, failures)
    return True


def _count(summary: ImportSummary, items: Sequence[Item], failures: Sequence[Failure]) -> None:
    summary.imported += len(items)
    summary.skipped += [(f.id, f"{f.reason}: {f.detail}" if f.detail else f.reason) for f in failures]
    for item in items:
        masked = [item.notes[m] for m in ("text", "video", "audio") if not item.masks.get(m, True)]
        if masked:
            summary.masked.append((item.id, "; ".join(masked)))
        counted = [note for key, note in item.notes.items() if key.endswith("_nonfinite")]
        if counted:
            summary.nonfinite.append((item.id, "; ".join(counted)))


def dataset_info(dataset: str) -> tuple[MmsaDataset, tuple[float, float]]:
    """The importer's facts of ``dataset`` and its label range (from configs/datasets/<name>.json)."""
    info = mmsa_dataset(dataset)
    facts = read_json_object(configs_dir() / "datasets" / f"{dataset}.json", "dataset facts file")
    low, high = facts["label_range"]
    return info, (float(low), float(high))


def import_mmsa(path: str | Path, dataset: str, profile: str = "paper", *, out: Path | None = None,
                workspace: Workspace | None = None, text_model: str | None = None, spacy_model: str | None = None,
                weights: WeightOptions | None = None, device: str = "auto", batch_size: int = 16,
                shard_size: int = 1000, trust_pickle: bool = False, aligned_rows: str = "trim",
                progress: bool = True) -> ImportSummary:
    """Import the MMSA file ``path`` of ``dataset`` into a cache (see the module docstring).

    Args:
        profile: ``paper`` or ``tiny``: which text encoders make the text streams.
        out: cache folder (default ``<workspace>/features/<dataset>/mmsa-<profile>``).
        text_model / spacy_model: replace the dataset's text model and spaCy pipeline.
        trust_pickle: load with the plain pickle module (runs whatever the file says).
        aligned_rows: ``trim`` (drop all-zero rows at both ends) or ``all`` (aligned files only).
    """
    started = time.perf_counter()
    if aligned_rows not in ALIGNED_ROWS or batch_size < 1 or shard_size < 1:
        raise UsageError(f"--aligned-rows must be one of {ALIGNED_ROWS} (got {aligned_rows!r}); "
                         f"--batch-size and --shard-size at least 1")
    info, label_range = dataset_info(dataset)
    chosen = import_profile(profile, info, text_model, spacy_model)
    parser, warnings = text_graph_parser(chosen, info)
    try:
        resolved = resolve_weights(chosen, weights or WeightOptions(), check_parser=False)
    except MissingWeightsError as error:
        raise UsageError(str(error)) from error
    data = read_mmsa_file(path, dataset, label_range, trust_pickle)
    workspace = workspace or Workspace.resolve()
    out = Path(out) if out is not None else workspace.features_dir(dataset, f"{SOURCE_FORMAT}-{chosen.name}")
    summary = ImportSummary(dataset, chosen.name, data.path, out, data.aligned, planned=len(data), warnings=warnings)
    chosen_device = resolve_device(device)
    encoders = build_text_encoders(chosen, resolved, chosen_device, parser)
    meta = import_meta(data, info, chosen, encoders, data.sha256, aligned_rows, warnings, shard_size)
    writer = CacheWriter(out, meta, device=str(chosen_device))
    run = _Run(data, encoders, writer, batch_size, aligned_rows == "trim", summary)
    with exclusive_run(out, "import"), inference_threads(chosen_device):  # a second import stops at once
        loop = ShardLoop(plan_rows(data), shard_size, writer)
        summary.shards = loop.counts
        loop.run(lambda k, rows, advance: write_shard(run, k, rows, advance), f"import {dataset}", progress)
    writer.finalize(len(data))
    summary.seconds = time.perf_counter() - started
    return summary
