"""One HDF5 shard file: its layout, how items are checked and written, and how they are read back.

Layout of ``shard-KKKKK.h5`` (n items)::

    /                  attrs: schema_version, shard_index, shard_size, recipe_hash, dataset,
                              profile, task, classes (JSON), meta (JSON of the whole CacheMeta),
                              failures (JSON list of {id, reason, split, detail}), masked (JSON
                              list of {id, split, modality, reason, detail}), hcm_version, n_items
    /items/id          (n,) str        /items/split     (n,) str
    /items/label       (n,) float64 (regression) or int64 (classification)
    /items/group       (n,) str        /items/position  (n,) int64
    /items/text        (n,) str        /items/labels    (n,) str, JSON of the extra label columns
    /items/notes       (n,) str JSON   /items/masks     (n, M) int8: 1 present, 0 absent, -1 unset;
                                                          attr ``names`` (JSON) gives the M modalities
    /features/<name>/data     (sum of rows, *shape) spec dtype, ~64 KiB chunks with Fletcher-32 checksums
    /features/<name>/offsets  (n + 1,) int64: item i is data[offsets[i]:offsets[i + 1]]
        attrs on /features/<name>: encoder, weights, config (JSON), shape (JSON), dim, dtype, recipe_hash
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hcm import __version__
from hcm.cache.schema import SCHEMA_VERSION, CacheError, CacheMeta, Failure, FeatureSpec, Item, Masked, to_json
from hcm.core.names import CLASSIFICATION

CHUNK_BYTES = 64 * 1024  # a single-item read touches a few chunks of this size
OFFSET_CHUNK = 8192
STR = h5py.string_dtype("utf-8")
SHARD_GLOB = "shard-*.h5"


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.h5"


def shard_index(path: Path) -> int | None:
    """``k`` of a ``shard-KKKKK.h5`` path, ``None`` for anything else (temp files included)."""
    stem = path.name
    if not (stem.startswith("shard-") and stem.endswith(".h5")):
        return None
    digits = stem[len("shard-"):-len(".h5")]
    return int(digits) if digits.isdigit() else None


def damaged(path: Path, what: str) -> CacheError:
    """The error for a shard that cannot be used, with the way out."""
    return CacheError(
        f"shard {path} {what}. Run `hcm cache verify {path.parent}` to list every problem; "
        f"delete the damaged shard and re-run the same extraction to rewrite it."
    )


# --------------------------------------------------------------------------- checking items


def _check_text(item_id: str, field_name: str, value: object) -> str:
    if not isinstance(value, str):
        raise CacheError(f"item {item_id!r}: {field_name} must be str, got {type(value).__name__}")
    if "\x00" in value:
        raise CacheError(f"item {item_id!r}: {field_name} contains a NUL character, which HDF5 strings cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CacheError(f"item {item_id!r}: {field_name} is not valid UTF-8 text ({exc})") from exc
    return value


def _cast_feature(item_id: str, spec: FeatureSpec, value: object) -> np.ndarray:
    """``value`` as an array of ``spec``'s dtype; refuses lossy kind changes, overflow and NaN/Inf."""
    array = np.asarray(value)
    if array.ndim != 1 + len(spec.shape) or array.shape[1:] != spec.shape:
        expected = "(n, " + ", ".join(map(str, spec.shape)) + ")" if spec.shape else "(n,)"
        raise CacheError(f"item {item_id!r}: feature {spec.name!r} has shape {array.shape}, expected {expected}")
    target = np.dtype(spec.dtype)
    if array.dtype.kind == "f" and target.kind in "biu":
        raise CacheError(f"item {item_id!r}: feature {spec.name!r} is {array.dtype}, the spec stores {target} (exact)")
    if target.kind in "iu" and array.size and array.dtype.kind in "iub":
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise CacheError(f"item {item_id!r}: feature {spec.name!r} has values outside {target}'s range")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as Inf, refused below
        cast = array.astype(target, copy=False)
    if target.kind == "f" and cast.size and not np.isfinite(cast).all():
        raise CacheError(
            f"item {item_id!r}: feature {spec.name!r} holds NaN or Inf once stored as {target} "
            f"(float16 overflows above 65504); fix the encoder output or store the stream as float32"
        )
    return cast


def check_item(meta: CacheMeta, item: Item) -> dict[str, np.ndarray]:
    """Validate ``item`` against ``meta``; return its features cast to the stored dtypes."""
    item_id = _check_text(str(item.id), "id", item.id)
    for name in ("split", "text", "group"):
        _check_text(item_id, name, getattr(item, name))
    if meta.task == CLASSIFICATION:
        if isinstance(item.label, (float, np.floating)) or not 0 <= int(item.label) < len(meta.classes):
            raise CacheError(
                f"item {item_id!r}: label {item.label!r} is not a class index in 0..{len(meta.classes) - 1}"
            )
    elif not np.isfinite(float(item.label)):
        raise CacheError(f"item {item_id!r}: regression label {item.label!r} is not finite")
    specs = meta.specs
    missing, extra = set(specs) - set(item.features), set(item.features) - set(specs)
    if missing or extra:
        raise CacheError(
            f"item {item_id!r}: features missing {sorted(missing)}, unexpected {sorted(extra)}; "
            f"give every declared stream (an absent one as an array with 0 rows)"
        )
    to_json(item.labels)
    to_json(item.notes)
    return {name: _cast_feature(item_id, spec, item.features[name]) for name, spec in specs.items()}


# --------------------------------------------------------------------------- writing


def _chunk_rows(spec: FeatureSpec, total_rows: int) -> int:
    row_bytes = spec.dim * np.dtype(spec.dtype).itemsize
    return max(1, min(total_rows, CHUNK_BYTES // row_bytes))


def _write_feature(root: h5py.Group, spec: FeatureSpec, rows: list[np.ndarray], recipe_hash: str) -> None:
    group = root.create_group(spec.name)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (n + 1,)
    data = np.concatenate(rows) if rows else np.zeros((0, *spec.shape), dtype=spec.dtype)  # (sum n_i, *shape)
    if len(data):  # chunked with a Fletcher-32 checksum per chunk: a flipped byte fails the read
        chunks = (_chunk_rows(spec, len(data)), *spec.shape)
        group.create_dataset("data", data=data.astype(spec.dtype, copy=False), chunks=chunks, fletcher32=True)
    else:
        group.create_dataset("data", data=data.astype(spec.dtype, copy=False))
    group.create_dataset("offsets", data=offsets, chunks=(min(len(offsets), OFFSET_CHUNK),), fletcher32=True)
    group.attrs.update({
        "encoder": spec.encoder, "weights": spec.weights, "config": to_json(spec.config),
        "shape": to_json(list(spec.shape)), "dim": spec.dim, "dtype": spec.dtype, "recipe_hash": recipe_hash,
    })


def _write_items(root: h5py.Group, meta: CacheMeta, items: list[Item]) -> None:
    label_dtype = np.int64 if meta.task == CLASSIFICATION else np.float64
    root.create_dataset("id", data=[it.id for it in items], dtype=STR)
    root.create_dataset("split", data=[it.split for it in items], dtype=STR)
    root.create_dataset("label", data=np.array([it.label for it in items], dtype=label_dtype))
    root.create_dataset("group", data=[it.group for it in items], dtype=STR)
    root.create_dataset("position", data=np.array([it.position for it in items], dtype=np.int64))
    root.create_dataset("text", data=[it.text for it in items], dtype=STR)
    root.create_dataset("labels", data=[to_json(it.labels) for it in items], dtype=STR)
    root.create_dataset("notes", data=[to_json(it.notes) for it in items], dtype=STR)
    names = sorted({name for it in items for name in it.masks})
    masks = np.full((len(items), len(names)), -1, dtype=np.int8)  # (n, M)
    for i, it in enumerate(items):
        for j, name in enumerate(names):
            if name in it.masks:
                masks[i, j] = int(bool(it.masks[name]))
    root.create_dataset("masks", data=masks).attrs["names"] = to_json(names)


def write_shard_file(path: Path, meta: CacheMeta, k: int, items: list[Item], failures: list[Failure],
                     masked: list[Masked]) -> None:
    """Write shard ``k`` to ``path`` (a temporary name; the writer renames it into place)."""
    features = [check_item(meta, item) for item in items]
    recipe_hash = meta.recipe_hash
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update({
            "schema_version": SCHEMA_VERSION, "shard_index": k, "shard_size": meta.shard_size,
            "recipe_hash": recipe_hash, "dataset": meta.dataset, "profile": meta.profile, "task": meta.task,
            "classes": to_json(meta.classes), "meta": to_json(meta.to_dict()), "hcm_version": __version__,
            "n_items": len(items),
            "failures": to_json([x.to_dict() for x in failures]),
            "masked": to_json([x.to_dict() for x in masked]),
        })
        _write_items(f.create_group("items"), meta, items)
        group = f.create_group("features")
        for spec in meta.features:
            _write_feature(group, spec, [feats[spec.name] for feats in features], recipe_hash)


# --------------------------------------------------------------------------- reading


def open_shard(path: Path) -> h5py.File:
    """Open a shard read-only, turning HDF5's low-level errors into a clear CacheError."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise damaged(path, f"cannot be opened as HDF5 (truncated or corrupt: {exc})") from exc


def _strings(dataset: h5py.Dataset) -> list[str]:
    return list(dataset.asstr()[()]) if dataset.shape[0] else []


@dataclass
class ShardHeader:
    """What a shard says about itself, read without touching feature data."""

    path: Path
    schema_version: int
    shard_index: int
    recipe_hash: str
    meta: CacheMeta
    failures: list[dict]
    masked: list[dict]
    specs: dict[str, FeatureSpec]
    ids: list[str]
    splits: list[str]
    labels: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.ids)


def read_header(path: Path) -> ShardHeader:
    """Read a shard's attributes, feature specs and its id/split/label columns."""
    with open_shard(path) as f:
        try:
            attrs = dict(f.attrs)
            specs = {}
            for name, group in f["features"].items():
                specs[name] = FeatureSpec(
                    name=name, shape=tuple(json.loads(group.attrs["shape"])), dtype=str(group["data"].dtype),
                    encoder=str(group.attrs["encoder"]), weights=str(group.attrs["weights"]),
                    config=json.loads(group.attrs["config"]),
                )
            items = f["items"]
            ids, splits, labels = _strings(items["id"]), _strings(items["split"]), items["label"][()]
        except (KeyError, OSError, ValueError) as exc:
            raise damaged(path, f"is not a complete hcm shard ({exc})") from exc
    try:
        meta = CacheMeta.from_dict(json.loads(attrs["meta"]))
    except (KeyError, ValueError, CacheError) as exc:
        raise damaged(path, f"carries no readable cache metadata ({exc})") from exc
    return ShardHeader(
        path=path, schema_version=int(attrs.get("schema_version", -1)), shard_index=int(attrs.get("shard_index", -1)),
        recipe_hash=str(attrs.get("recipe_hash", "")), meta=meta, failures=json.loads(attrs.get("failures", "[]")),
        masked=json.loads(attrs.get("masked", "[]")),
        specs=specs, ids=ids, splits=splits, labels=labels,
    )


class ShardReader:
    """Random access to the items of one open shard.

    Loads the small per-item columns and the offsets of the chosen features when opened; the
    feature data stays on disk (one slice per read) unless ``in_memory`` is set.
    """

    def __init__(self, path: Path, features: list[str], in_memory: bool = False) -> None:
        self.path = path
        self.file = open_shard(path)
        try:
            items = self.file["items"]
            self.columns = {name: _strings(items[name]) for name in ("id", "split", "group", "text", "labels", "notes")}
            self.label = items["label"][()]
            self.position = items["position"][()]
            self.masks = items["masks"][()]  # (n, M)
            self.mask_names = json.loads(items["masks"].attrs["names"])
            groups = {name: self.file["features"][name] for name in features}
            self.offsets = {name: g["offsets"][()] for name, g in groups.items()}
            self.data = {name: (g["data"][()] if in_memory else g["data"]) for name, g in groups.items()}
        except (KeyError, OSError, ValueError) as exc:
            self.file.close()
            raise damaged(path, f"is not a complete hcm shard ({exc})") from exc
        self.in_memory = in_memory
        if in_memory:  # everything is in numpy arrays now: no HDF5 handle to carry across processes
            self.file.close()

    def item(self, row: int) -> Item:
        features = {}
        for name, data in self.data.items():
            start, stop = self.offsets[name][row], self.offsets[name][row + 1]
            try:
                features[name] = data[start:stop]  # (n_i, *shape)
            except (OSError, ValueError) as exc:
                raise damaged(self.path, f"has unreadable data in feature {name!r} ({exc})") from exc
        label = self.label[row].item()
        masks = {name: bool(v) for name, v in zip(self.mask_names, self.masks[row]) if v >= 0}
        return Item(
            id=self.columns["id"][row], split=self.columns["split"][row], label=label,
            labels=json.loads(self.columns["labels"][row]), text=self.columns["text"][row],
            group=self.columns["group"][row], position=int(self.position[row]), features=features,
            masks=masks, notes=json.loads(self.columns["notes"][row]),
        )

    def close(self) -> None:
        if not self.in_memory:
            self.file.close()
