"""Cache items -> padded model batches (the batch contract of docs/architecture.md).

One example per cache item:

- text: one node per token of the current utterance (``roberta_current == 1``), the
  modality's streams concatenated on the feature axis; the dependency edges (``text_edges``,
  row indices into the full ``roberta`` window) re-indexed onto those nodes, symmetric,
  without self loops.
- video / audio: one node per row of the modality's first stream.
- Every further stream of a modality is aligned to the first stream's node count: a stream of
  the same length is taken as is, a one-row stream is repeated on every node, a longer stream
  is average-pooled and a shorter one linearly interpolated to that count. This is where the
  Mel frames meet the audio nodes: audio's first stream (ESResNeXt, one row per segment)
  sets S nodes, and a Mel stream of k frames (k, 128), for any k, is average-pooled onto
  them, node s taking the mean of the frames in ``[s k/S, (s+1) k/S)`` (``align_rows``). The
  model does not pool Mel frames again; under the paper reading it resamples whole nodes to
  one count M (``hcm.model.nodes``).
- Optional node caps: text keeps its first ``max_text_tokens`` tokens; video and audio keep
  ``max_frames`` / ``max_audio`` evenly spaced rows.
- Every feed stream is standardised per dimension with the train split's mean and std
  (``DataConfig.stream_stats``, computed by ``stream_statistics`` and stored with the run;
  ``data_config`` builds the whole ``DataConfig`` of a run), so
  streams of very different scales (log-Mel in dB beside unit-scale embeddings) enter the
  modality heads on an equal footing.
- A modality marked absent in ``Item.masks`` (or with no rows) has zero real nodes; the
  padded batch keeps at least one all-False node so tensors are never empty.

The dataset streams items from the cache (DataLoader workers each reopen their HDF5 handles)
or reads them from memory with ``in_memory=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from hcm.cache import CacheMeta, FeatureCache
from hcm.cache.manifest import load_manifest
from hcm.core.names import MODALITIES, REGRESSION
from hcm.training import TrainingError
from hcm.training.settings import DatasetFacts, TrainConfig

TEXT_CURRENT = "roberta_current"
TEXT_EDGES = "text_edges"
#: The tensors the network sees; collate also adds ``index`` (positions in the dataset).
MODEL_KEYS = ("text", "text_mask", "text_adj", "video", "video_mask", "audio", "audio_mask", "label")


@dataclass
class DataConfig:
    """Which cached streams feed which modality, and optional node caps.

    Args:
        streams: modality -> cache stream names, first stream sets the node count
            (e.g. ``{"text": ["roberta", "clip_text"], "video": [...], "audio": [...]}``).
        max_text_tokens: keep at most this many current-utterance tokens (``None``: all).
        max_frames: keep at most this many evenly spaced video rows.
        max_audio: keep at most this many evenly spaced audio rows.
        current_stream: 1-D stream marking the current utterance's rows of the first text stream.
        edges_stream: (E, 2) stream of dependency edges over those rows.
        stream_stats: stream -> {"mean": [...], "std": [...]} per flattened dimension, from the
            train split; each stream is standardised with them (``None``: raw values).
    """

    streams: dict[str, list[str]]
    max_text_tokens: int | None = None
    max_frames: int | None = None
    max_audio: int | None = None
    current_stream: str = TEXT_CURRENT
    edges_stream: str = TEXT_EDGES
    stream_stats: dict[str, dict[str, list[float]]] | None = None

    def standardise(self, name: str, rows: np.ndarray) -> np.ndarray:
        """(n, D) rows of stream ``name`` minus the train mean, over the train std."""
        scale = self._scales.get(name)
        return rows if scale is None else (rows - scale[0]) / scale[1]

    @cached_property
    def _scales(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``stream_stats`` as float32 arrays, converted once (standardise runs for every item)."""
        return {name: (np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32))
                for name, stats in (self.stream_stats or {}).items()}

    def cap(self, modality: str) -> int | None:
        return {"text": self.max_text_tokens, "video": self.max_frames, "audio": self.max_audio}[modality]

    def needed_streams(self, available: set[str]) -> list[str]:
        names = [name for modality in MODALITIES for name in self.streams.get(modality, [])]
        names += [name for name in (self.current_stream, self.edges_stream) if name in available]
        return list(dict.fromkeys(names))


@dataclass
class Example:
    """One item as arrays: per-modality nodes (n, D), text edges (E, 2), the label."""

    index: int
    nodes: dict[str, np.ndarray]
    present: dict[str, bool]
    edges: np.ndarray
    label: float | int


def align_rows(rows: np.ndarray, count: int) -> np.ndarray:
    """Resample a (m, D) stream to (count, D): same, repeat one row, average-pool or interpolate."""
    m, dim = rows.shape
    if m == count or count == 0:
        return rows[:count]
    if m == 0:
        return np.zeros((count, dim), dtype=np.float32)
    if m == 1:
        return np.repeat(rows, count, axis=0)
    series = torch.from_numpy(np.ascontiguousarray(rows.T, dtype=np.float32))[None]  # (1, D, m)
    if m > count:
        resized = F.adaptive_avg_pool1d(series, count)  # (1, D, count)
    else:
        resized = F.interpolate(series, size=count, mode="linear", align_corners=True)
    return resized[0].T.numpy()  # (count, D)


def even_rows(n: int, cap: int | None) -> np.ndarray:
    """Indices of at most ``cap`` evenly spaced rows out of ``n``."""
    if cap is None or n <= cap:
        return np.arange(n)
    return np.linspace(0, n - 1, cap).round().astype(np.int64)


def reindex_edges(edges: np.ndarray, kept_rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Edges over original rows -> edges over ``kept_rows`` positions, symmetric, no self loops."""
    if edges.size == 0 or kept_rows.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    lookup = np.full(n_rows, -1, dtype=np.int64)
    lookup[kept_rows] = np.arange(kept_rows.size)
    edges = edges.astype(np.int64).reshape(-1, 2)
    inside = (edges >= 0).all(axis=1) & (edges < n_rows).all(axis=1)
    mapped = lookup[edges[inside]]  # (E', 2)
    mapped = mapped[(mapped >= 0).all(axis=1) & (mapped[:, 0] != mapped[:, 1])]
    both = np.concatenate([mapped, mapped[:, ::-1]], axis=0)
    return np.unique(both, axis=0) if both.size else both


def _text_rows(features: dict[str, np.ndarray], cfg: DataConfig, n_first: int) -> np.ndarray:
    """Rows of the first text stream that belong to the current utterance, capped."""
    current = features.get(cfg.current_stream)
    if current is None or current.shape[0] != n_first:
        rows = np.arange(n_first)
    else:
        rows = np.flatnonzero(current.reshape(-1) == 1)
    return rows if cfg.max_text_tokens is None else rows[: cfg.max_text_tokens]


def as_rows(stream: np.ndarray) -> np.ndarray:
    """A ragged stream (n, *shape) as float32 rows (n, prod(shape)); n may be 0."""
    stream = np.asarray(stream, dtype=np.float32)
    return stream.reshape(stream.shape[0], int(np.prod(stream.shape[1:])))


def stream_statistics(cache: FeatureCache | str | os.PathLike, names: list[str], max_items: int = 2000,
                      min_std: float = 1e-4) -> dict[str, dict[str, list[float]]]:
    """Per-dimension mean and std of each stream over the train split's rows.

    ``cache``: an open reader of the train split (the trainer passes its train dataset's), or the
    cache folder. At most ``max_items`` evenly spaced train items are read, which bounds the cost
    on large caches; stds are floored at ``min_std`` so constant dimensions stay constant (zero).
    """
    opened = not isinstance(cache, FeatureCache)
    if opened:
        cache = FeatureCache(cache, split="train", features=names)
    picked = even_rows(len(cache), max_items)
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(names, 0)
    for index in picked:
        features = cache[int(index)].features
        for name in names:
            rows = as_rows(features[name]).astype(np.float64)  # (n, D)
            sums[name] = sums.get(name, 0.0) + rows.sum(axis=0)
            squares[name] = squares.get(name, 0.0) + (rows ** 2).sum(axis=0)
            counts[name] += rows.shape[0]
    if opened:
        cache.close()
    stats = {}
    for name in names:
        if counts[name] == 0:
            continue
        mean = sums[name] / counts[name]
        std = np.sqrt(np.maximum(squares[name] / counts[name] - mean ** 2, 0.0))
        stats[name] = {"mean": mean.astype(np.float32).tolist(),
                       "std": np.maximum(std, min_std).astype(np.float32).tolist()}
    return stats


def modality_nodes(
    modality: str, features: dict[str, np.ndarray], cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray, int]:
    """(nodes (n, D), kept rows of the first stream, its full row count) of one modality."""
    names = cfg.streams[modality]
    first = cfg.standardise(names[0], as_rows(features[names[0]]))
    n_first = first.shape[0]
    if modality == "text":
        rows = _text_rows(features, cfg, n_first)
    else:
        rows = even_rows(n_first, cfg.cap(modality))
    parts = [first[rows]]  # (n, D_0)
    for name in names[1:]:
        stream = cfg.standardise(name, as_rows(features[name]))
        aligned = stream[rows] if stream.shape[0] == n_first and n_first > 1 else align_rows(stream, rows.size)
        parts.append(aligned)
    return np.concatenate(parts, axis=1), rows, n_first  # (n, sum D)


def item_example(index: int, item, cfg: DataConfig) -> Example:
    """Turn one cache ``Item`` into an ``Example`` (see module doc)."""
    nodes, present, edges = {}, {}, np.zeros((0, 2), dtype=np.int64)
    for modality in cfg.streams:
        values, rows, n_first = modality_nodes(modality, item.features, cfg)
        present[modality] = bool(item.masks.get(modality, True)) and values.shape[0] > 0
        nodes[modality] = values if present[modality] else values[:0]
        if modality == "text" and present[modality] and cfg.edges_stream in item.features:
            edges = reindex_edges(item.features[cfg.edges_stream], rows, n_first)
    return Example(index=index, nodes=nodes, present=present, edges=edges, label=item.label)


def _pad(examples: list[Example], modality: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [ex.nodes[modality].shape[0] if modality in ex.nodes else 0 for ex in examples]
    width = max(1, max(lengths))
    values = torch.zeros(len(examples), width, dim)  # (B, N, D)
    mask = torch.zeros(len(examples), width, dtype=torch.bool)  # (B, N)
    for b, (ex, n) in enumerate(zip(examples, lengths)):
        if n:
            values[b, :n] = torch.from_numpy(ex.nodes[modality])
            mask[b, :n] = True
    return values, mask


class Collate:
    """Pads a list of ``Example`` into the batch dict; a class so DataLoader workers can pickle it."""

    def __init__(self, dims: dict[str, int], regression: bool) -> None:
        self.dims = dims
        self.regression = regression

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for modality, dim in self.dims.items():
            batch[modality], batch[f"{modality}_mask"] = _pad(examples, modality, dim)
        if "text" in self.dims:
            width = batch["text"].shape[1]
            adj = torch.zeros(len(examples), width, width)  # (B, N_t, N_t)
            for b, ex in enumerate(examples):
                if ex.edges.size:
                    edges = torch.from_numpy(ex.edges)
                    adj[b, edges[:, 0], edges[:, 1]] = 1.0
            batch["text_adj"] = adj
        labels = [ex.label for ex in examples]
        dtype = torch.float32 if self.regression else torch.long
        batch["label"] = torch.tensor(labels, dtype=dtype)  # (B,)
        batch["index"] = torch.tensor([ex.index for ex in examples], dtype=torch.long)  # (B,)
        return batch


@dataclass(frozen=True)
class CacheInfo:
    """A cache's manifest, read once and handed to every reader of the command."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def meta(self) -> CacheMeta:
        return CacheMeta.from_dict(self.manifest)

    @property
    def counts(self) -> dict[str, int]:
        """Items per split."""
        return dict(self.manifest.get("counts", {}))


def cache_info(cache_dir: str | os.PathLike) -> CacheInfo:
    """Read a cache's manifest (rebuilt from the shards in memory where it is missing)."""
    return CacheInfo(Path(cache_dir), load_manifest(Path(cache_dir), save=False))


def read_cache_meta(cache_dir: str | os.PathLike) -> tuple[CacheMeta, dict[str, int]]:
    """A cache's metadata and its item count per split, from the manifest alone."""
    info = cache_info(cache_dir)
    return info.meta, info.counts


class CacheDataset(Dataset):
    """A split of a feature cache as ``Example``s.

    Reads one item at a time from the shards (the cache reader reopens its HDF5 handles in
    each DataLoader worker), or from memory with ``in_memory=True`` (small caches).

    Args:
        cache_dir: the cache folder (with ``manifest.json``), or its :class:`CacheInfo` (manifest
            already read).
        split: ``train``, ``valid``, ``test`` (or a list, or ``None`` for all).
        cfg: which streams feed which modality, node caps.
        in_memory: load the selected streams of the split into memory when first read.
    """

    def __init__(self, cache_dir: str | os.PathLike | CacheInfo, split, cfg: DataConfig,
                 in_memory: bool = False) -> None:
        info = cache_dir if isinstance(cache_dir, CacheInfo) else cache_info(cache_dir)
        self.cache_dir = info.directory
        self.cfg = cfg
        available = set(info.meta.specs)
        self._check_streams(available)
        self.cache = FeatureCache(self.cache_dir, split=split, features=cfg.needed_streams(available),
                                  in_memory=in_memory, manifest=info.manifest)
        self.meta = self.cache.meta
        self.ids: list[str] = list(self.cache.ids)
        self.labels: np.ndarray = np.asarray(self.cache.labels)
        self.dims = {
            modality: sum(self.cache.specs[name].dim for name in names) for modality, names in cfg.streams.items()
        }

    def _check_streams(self, available: set[str]) -> None:
        missing = [n for names in self.cfg.streams.values() for n in names if n not in available]
        if missing:
            raise ValueError(
                f"cache {self.cache_dir} lacks the streams {missing} that the data settings ask for "
                f"(it has {sorted(available)}); change the dataset's streams or re-extract"
            )

    @property
    def task(self) -> str:
        return self.meta.task

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Example:
        return item_example(index, self.cache[index], self.cfg)

    def collate(self) -> Collate:
        return Collate(self.dims, regression=self.task == REGRESSION)


def data_config(facts: DatasetFacts, cfg: TrainConfig, cache: FeatureCache | str | os.PathLike | None) -> DataConfig:
    """How items become examples; with ``standardise_streams``, the stream statistics of the train
    split of ``cache`` (an open train reader or the folder; ``None``: no statistics yet)."""
    streams = {m: list(s) for m, s in facts.streams.items()}
    stats = None
    if cfg.standardise_streams and cache is not None:
        stats = stream_statistics(cache, [name for names in streams.values() for name in names])
        bad = [name for name, values in stats.items() if not np.isfinite(values["mean"] + values["std"]).all()]
        if bad:
            where = cache.directory if isinstance(cache, FeatureCache) else cache
            raise TrainingError(f"the train split of cache {where} holds NaN or infinite values in the streams "
                                f"{bad}; run `hcm cache verify {where}` and re-extract the damaged shards")
    return DataConfig(streams=streams, max_text_tokens=cfg.max_text_tokens, max_frames=cfg.max_frames,
                      max_audio=cfg.max_audio, stream_stats=stats)
