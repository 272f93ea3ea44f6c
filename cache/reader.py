"""Reading a cache: ``FeatureCache``, a map-style dataset of ``Item``s over the shards.

Opening refuses a cache of another extraction recipe version, checks the manifest against
every shard (schema version, recipe hash, feature shapes and dtypes, item counts) and builds a
small index (shard, row, id, split, label per item).
Feature data is read one item at a time from HDF5 (bounded memory) unless ``in_memory`` is set.
HDF5 handles are opened lazily per process and dropped on pickling or when the process id
changes, so a FeatureCache can be handed to DataLoader worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hcm.cache.manifest import load_manifest
from hcm.cache.schema import SCHEMA_VERSION, CacheError, CacheMeta, FeatureSpec, Item, check_recipe_version
from hcm.cache.shard import ShardHeader, ShardReader, read_header
from hcm.core.names import CLASSIFICATION


def _check_header(header: ShardHeader, meta: CacheMeta, entry: dict) -> None:
    """Raise CacheError if a shard disagrees with the manifest."""
    path, problems = header.path, []
    if header.schema_version != SCHEMA_VERSION:
        problems.append(f"schema version {header.schema_version}, expected {SCHEMA_VERSION}")
    if header.recipe_hash != meta.recipe_hash:
        problems.append(f"recipe hash {header.recipe_hash}, the manifest has {meta.recipe_hash}")
    for name, spec in meta.specs.items():
        found = header.specs.get(name)
        if found is None:
            problems.append(f"no feature {name!r}")
        elif (found.shape, found.dtype) != (spec.shape, spec.dtype):
            problems.append(f"feature {name!r} is {found.dtype}{list(found.shape)}, "
                            f"the manifest says {spec.dtype}{list(spec.shape)}")
    if header.n_items != entry["items"]:
        problems.append(f"{header.n_items} items, the manifest lists {entry['items']}")
    if problems:
        raise CacheError(
            f"shard {path} does not match {path.parent / 'manifest.json'}: {'; '.join(problems)}. "
            f"Run `hcm cache verify {path.parent}`; re-extract the shard or the cache."
        )


class FeatureCache:
    """The items of a cache, optionally restricted to some splits and feature streams.

    Args:
        directory: the cache folder (shards + manifest.json).
        split: one split name, a list of them, or None for all.
        features: feature streams to read (None: all); other streams are never touched.
        in_memory: load the selected features of every shard into memory when first used.
        manifest: the cache's manifest when the caller has read it already (read once per command).
    """

    def __init__(self, directory: str | os.PathLike, split: str | list[str] | None = None,
                 features: list[str] | None = None, in_memory: bool = False, manifest: dict | None = None) -> None:
        self.directory = Path(directory)
        self.manifest = manifest if manifest is not None else load_manifest(self.directory)
        self.meta = CacheMeta.from_dict(self.manifest)
        check_recipe_version(self.meta, self.directory)
        self.specs: dict[str, FeatureSpec] = self.meta.specs
        self.features = self._choose_features(features)
        self.splits = self._choose_splits(split)
        self.in_memory = in_memory
        self._build_index()
        self._pid = os.getpid()
        self._readers: dict[int, ShardReader] = {}

    def _choose_features(self, features: list[str] | None) -> list[str]:
        if features is None:
            return list(self.specs)
        unknown = [name for name in features if name not in self.specs]
        if unknown:
            raise CacheError(f"cache {self.directory} has no feature {unknown}; it has {list(self.specs)}")
        return list(features)

    def _choose_splits(self, split: str | list[str] | None) -> list[str] | None:
        if split is None:
            return None
        chosen = [split] if isinstance(split, str) else list(split)
        unknown = [name for name in chosen if name not in self.manifest["counts"]]
        if unknown:
            splits = list(self.manifest["counts"])
            raise CacheError(f"cache {self.directory} has no items of split {unknown}; its splits are {splits}")
        return chosen

    def _build_index(self) -> None:
        """Check every shard against the manifest and index the selected items (no feature data read)."""
        shard_of, row_of, ids, labels = [], [], [], []
        for key, entry in self.manifest["shards"].items():
            path = self.directory / entry["file"]
            if not path.is_file():
                raise CacheError(
                    f"{path} is listed in the manifest but missing; re-run the extraction to rewrite "
                    f"shard {key}, or `hcm cache verify {self.directory}` to list every problem"
                )
            header = read_header(path)
            _check_header(header, self.meta, entry)
            rows = [i for i, s in enumerate(header.splits) if self.splits is None or s in self.splits]
            shard_of += [int(key)] * len(rows)
            row_of += rows
            ids += [header.ids[i] for i in rows]
            labels.append(header.labels[rows])
        label_dtype = np.int64 if self.meta.task == CLASSIFICATION else np.float64
        self._shard = np.array(shard_of, dtype=np.int32)  # (N,)
        self._row = np.array(row_of, dtype=np.int32)  # (N,)
        self.ids: list[str] = ids
        self.labels: np.ndarray = np.concatenate(labels).astype(label_dtype) if labels else np.zeros(0, label_dtype)
        self._position = {item_id: i for i, item_id in enumerate(ids)}
        if len(self._position) != len(ids):
            raise CacheError(f"cache {self.directory} holds repeated item ids; run `hcm cache verify {self.directory}`")

    @property
    def counts(self) -> dict[str, int]:
        """Items per split in the whole cache (whatever the selection)."""
        return dict(self.manifest["counts"])

    def _reader(self, k: int) -> ShardReader:
        if os.getpid() != self._pid:  # a forked worker: HDF5 handles of the parent are not ours
            self._readers = {key: r for key, r in self._readers.items() if r.in_memory}
            self._pid = os.getpid()
        reader = self._readers.get(k)
        if reader is None:
            entry = self.manifest["shards"][str(k)]
            reader = ShardReader(self.directory / entry["file"], self.features, self.in_memory)
            self._readers[k] = reader
        return reader

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(f"item index {index} out of range for {len(self)} items")
        index %= len(self)
        return self._reader(int(self._shard[index])).item(int(self._row[index]))

    def get(self, item_id: str) -> Item:
        """The item with id ``item_id`` (KeyError if it is not in this selection)."""
        if item_id not in self._position:
            raise KeyError(f"item {item_id!r} is not in cache {self.directory} (splits {self.splits or 'all'})")
        return self[self._position[item_id]]

    def close(self) -> None:
        """Close this process's HDF5 handles (they reopen on the next read)."""
        if os.getpid() == self._pid:
            for reader in self._readers.values():
                reader.close()
        self._readers = {}

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.directory)!r}, split={self.splits}, items={len(self)}, "
                f"features={self.features})")
