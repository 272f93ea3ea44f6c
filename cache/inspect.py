"""Looking at a cache from outside: a summary (``cache_info``/``format_info``), the dropped and masked
items (``dropped_items``/``masked_items``) and a full check (``verify_cache``).

``verify_cache`` trusts nothing: it recomputes checksums, re-reads every shard's attributes,
columns and offsets, scans float features for NaN/Inf in bounded blocks, and compares the
totals with the manifest and the extraction plan. Each problem is one line naming the file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from hcm.cache.manifest import MANIFEST, load_manifest, read_manifest, rebuild_manifest, sha256_file, shard_files
from hcm.cache.schema import SCHEMA_VERSION, CacheError, CacheMeta, FeatureSpec, recipe_precision
from hcm.cache.shard import open_shard
from hcm.core.names import CLASSIFICATION, REGRESSION

SCAN_BYTES = 16 * 1024 * 1024  # NaN/Inf scan block
ITEM_COLUMNS = ("id", "split", "label", "group", "position", "text", "labels", "notes", "masks")


def cache_info(directory: str | os.PathLike) -> dict:
    """A JSON-able summary of the cache in ``directory``, read from its manifest."""
    directory = Path(directory)
    manifest = load_manifest(directory, save=False)
    meta = CacheMeta.from_dict(manifest)
    files = [directory / entry["file"] for entry in manifest["shards"].values()] + [directory / MANIFEST]
    return {
        "path": str(directory), "dataset": meta.dataset, "profile": meta.profile, "task": meta.task,
        "classes": meta.classes, "schema_version": manifest["schema_version"],
        "hcm_version": manifest.get("hcm_version"), "recipe_hash": manifest["recipe_hash"],
        "precision": recipe_precision(meta.recipe), "shard_size": meta.shard_size,
        "n_planned": manifest.get("n_planned"),
        "complete": manifest.get("complete", False), "n_items": manifest["n_items"],
        "counts": manifest["counts"], "shards": len(manifest["shards"]),
        "features": {spec.name: {"shape": list(spec.shape), "dim": spec.dim, "dtype": spec.dtype,
                                 "encoder": spec.encoder, "weights": spec.weights} for spec in meta.features},
        "failures": manifest["failures"], "masked": manifest.get("masked", []),
        "size_bytes": sum(path.stat().st_size for path in files if path.is_file()),
        "created": manifest.get("created"), "updated": manifest.get("updated"),
    }


def masked_items(directory: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Every masked modality of the kept items (of ``split``, or all): ``{id, split, modality, reason, detail}``.

    An item appears once per masked modality; ``len({m["id"] for m in ...})`` counts the items.
    """
    masked = load_manifest(Path(directory), save=False).get("masked", [])
    return [entry for entry in masked if split is None or entry.get("split") == split]


def dropped_items(directory: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Every planned item that was dropped (of ``split``, or all): ``{id, split, reason, detail}``."""
    failures = load_manifest(Path(directory), save=False)["failures"]
    return [entry for entry in failures if split is None or entry.get("split") == split]


def _size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _by_split(entries: list[dict], key: tuple[str, ...]) -> list[str]:
    """One line per distinct ``key`` value of ``entries`` with its count per split, most frequent first."""
    groups: dict[tuple, Counter] = {}
    for entry in entries:
        groups.setdefault(tuple(entry.get(name, "") for name in key), Counter())[entry.get("split") or "?"] += 1
    lines = []
    for what, splits in sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        per_split = ", ".join(f"{name} {n}" for name, n in sorted(splits.items()))
        lines.append(f"  {' / '.join(what):<36} {sum(splits.values()):>6}  ({per_split})")
    return lines


def _listing(title: str, entries: list[dict], key: tuple[str, ...], verbose: bool) -> list[str]:
    """The failures or masked section: counts per reason and split, and every entry when ``verbose``."""
    n_items = len({entry["id"] for entry in entries})
    lines = ["", f"{title:<10} {len(entries)}" + (f" ({n_items} items)" if n_items != len(entries) else "")]
    lines += _by_split(entries, key)
    if verbose:
        for entry in entries:
            what = " ".join(entry.get(name, "") for name in key)
            detail = f": {entry['detail']}" if entry.get("detail") else ""
            lines.append(f"    {entry['id']} [{entry.get('split') or '?'}] {what}{detail}")
    elif entries:
        lines.append("  (ids: hcm cache info --verbose, or --json)")
    return lines


def format_info(info: dict, verbose: bool = False) -> str:
    """``cache_info``'s summary as a human-readable table (``verbose``: every dropped and masked id)."""
    planned = info["n_planned"] if info["n_planned"] is not None else "unknown"
    lines = [
        f"cache      {info['path']}",
        f"dataset    {info['dataset']} (profile {info['profile']}, task {info['task']})",
        f"items      {info['n_items']} of {planned} planned, {'complete' if info['complete'] else 'INCOMPLETE'}",
        "splits     " + ", ".join(f"{name} {n}" for name, n in info["counts"].items()),
        f"shards     {info['shards']} x {info['shard_size']} planned items, "
        f"{_size(info['size_bytes'])} on disk",
        f"recipe     {info['recipe_hash']}  (schema {info['schema_version']}, hcm {info['hcm_version']})",
    ]
    if info.get("precision"):
        lines.append(f"precision  {info['precision']} (the encoders' arithmetic; features stored as float16)")
    if info["classes"]:
        lines.append("classes    " + ", ".join(info["classes"]))
    lines += ["", f"{'feature':<18} {'shape':<14} {'dtype':<8} encoder"]
    for name, feature in info["features"].items():
        shape = "(n, " + ", ".join(map(str, feature["shape"])) + ")" if feature["shape"] else "(n,)"
        lines.append(f"{name:<18} {shape:<14} {feature['dtype']:<8} {feature['encoder']} {feature['weights']}".rstrip())
    lines += _listing("failures", info["failures"], ("reason",), verbose)
    lines += _listing("masked", info["masked"], ("modality", "reason"), verbose)
    return "\n".join(lines)


def _feature_problems(name: str, group: h5py.Group, spec: FeatureSpec, n_items: int, recipe_hash: str) -> list[str]:
    data, offsets = group["data"], group["offsets"][()]
    problems = []
    if (data.dtype.name, data.shape[1:]) != (spec.dtype, spec.shape):
        problems.append(f"feature {name!r} is {data.dtype.name}{list(data.shape[1:])}, "
                        f"the manifest says {spec.dtype}{list(spec.shape)}")
    if group.attrs.get("recipe_hash") != recipe_hash:
        problems.append(f"feature {name!r} carries recipe hash {group.attrs.get('recipe_hash')}")
    if offsets.shape != (n_items + 1,):
        problems.append(f"feature {name!r} has {offsets.shape[0]} offsets for {n_items} items (want n + 1)")
    elif offsets[0] != 0 or offsets[-1] != data.shape[0] or np.any(np.diff(offsets) < 0):
        problems.append(f"feature {name!r} offsets are not monotone from 0 to {data.shape[0]}")
    if data.dtype.kind == "f" and data.shape[0]:
        block = max(1, SCAN_BYTES // max(1, data.dtype.itemsize * spec.dim))
        bad = sum(int((~np.isfinite(data[i:i + block])).sum()) for i in range(0, data.shape[0], block))
        if bad:
            problems.append(f"feature {name!r} holds {bad} NaN/Inf values")
    return problems


def _item_problems(f: h5py.File, meta: CacheMeta, entry: dict) -> list[str]:
    items, problems = f["items"], []
    n_items = int(f.attrs["n_items"])
    lengths = {name: items[name].shape[0] for name in ITEM_COLUMNS}
    if set(lengths.values()) != {n_items} and n_items:
        problems.append(f"item columns have lengths {lengths}, expected {n_items}")
    if n_items != entry["items"]:
        problems.append(f"{n_items} items, the manifest lists {entry['items']}")
    splits = dict(Counter(items["split"].asstr()[()])) if n_items else {}
    if splits != entry["counts"]:
        problems.append(f"split counts {splits}, the manifest lists {entry['counts']}")
    labels = items["label"][()]
    if meta.task == REGRESSION and not np.isfinite(labels).all():
        problems.append("non-finite regression labels")
    if meta.task == CLASSIFICATION and np.any((labels < 0) | (labels >= len(meta.classes))):
        problems.append(f"class labels outside 0..{len(meta.classes) - 1}")
    if json.loads(f.attrs["failures"]) != entry["failures"]:
        problems.append("failures differ from the manifest's")
    masked = json.loads(f.attrs.get("masked", "[]"))
    if masked != entry.get("masked", []):
        problems.append("masked modalities differ from the manifest's")
    names = json.loads(items["masks"].attrs["names"])
    rows = {item_id: row for row, item_id in enumerate(items["id"].asstr()[()])} if n_items else {}
    flags = items["masks"][()]  # (n, M)
    unmasked = [m["id"] for m in masked if m["id"] not in rows or m["modality"] not in names
                or flags[rows[m["id"]], names.index(m["modality"])] != 0]
    if unmasked:
        problems.append(f"{len(unmasked)} listed masked modalities are not masked in the items, e.g. {unmasked[:3]}")
    return problems


def _shard_problems(path: Path, meta: CacheMeta, entry: dict, k: int) -> tuple[list[str], list[str]]:
    """Problems of one shard, and its item ids (for the duplicate check)."""
    try:
        f = open_shard(path)
    except CacheError as exc:
        return [str(exc)], []
    problems, ids = [], []
    with f:
        try:
            attrs = f.attrs
            if attrs.get("schema_version") != SCHEMA_VERSION:
                problems.append(f"schema version {attrs.get('schema_version')}, expected {SCHEMA_VERSION}")
            if attrs.get("recipe_hash") != meta.recipe_hash:
                problems.append(f"recipe hash {attrs.get('recipe_hash')}, the manifest has {meta.recipe_hash}")
            if attrs.get("shard_index") != k:
                problems.append(f"says it is shard {attrs.get('shard_index')}")
            problems += _item_problems(f, meta, entry)
            for name, spec in meta.specs.items():
                if name not in f["features"]:
                    problems.append(f"feature {name!r} is missing")
                    continue
                problems += _feature_problems(name, f["features"][name], spec, int(attrs["n_items"]), meta.recipe_hash)
            ids = list(f["items/id"].asstr()[()]) if int(attrs["n_items"]) else []
        except (KeyError, OSError, ValueError, TypeError) as exc:
            problems.append(f"unreadable ({type(exc).__name__}: {exc}); delete it and re-run the extraction")
    return [f"{path.name}: {p}" for p in problems], ids


def _load_for_verify(directory: Path) -> tuple[dict, list[str]]:
    if not directory.is_dir():
        state = "is a file, not a cache folder" if directory.exists() else "does not exist"
        raise CacheError(f"cache directory {directory} {state}")
    try:
        manifest = read_manifest(directory)
    except CacheError as exc:
        return rebuild_manifest(directory), [str(exc)]
    if manifest is None:
        rebuilt = rebuild_manifest(directory)  # raises "not an hcm cache" without shards
        n_shards = len(rebuilt["shards"])
        return rebuilt, [f"{MANIFEST} is missing; opening the cache rebuilds it from the {n_shards} shards"]
    return manifest, []


def _plan_problems(manifest: dict, meta: CacheMeta) -> list[str]:
    planned = manifest.get("n_planned")
    if planned is None:
        return ["the plan size is unknown (extraction never finalized): the cache may be incomplete"]
    problems = []
    for k in range(meta.n_shards(planned)):
        entry = manifest["shards"].get(str(k))
        if entry is None:
            problems.append(f"shard {k} of the plan of {planned} items was never written; resume the extraction")
        elif entry["items"] + len(entry["failures"]) != meta.planned_in_shard(k, planned):
            problems.append(f"shard {k} accounts for {entry['items'] + len(entry['failures'])} plan positions, "
                            f"expected {meta.planned_in_shard(k, planned)}")
    return problems


def verify_cache(directory: str | os.PathLike) -> list[str]:
    """Every problem found in the cache at ``directory``; an empty list means it is sound."""
    directory = Path(directory)
    manifest, problems = _load_for_verify(directory)
    meta = CacheMeta.from_dict(manifest)
    if manifest["recipe_hash"] != meta.recipe_hash:
        problems.append(
            f"{MANIFEST}: recipe hash {manifest['recipe_hash']} does not match its recipe ({meta.recipe_hash})"
        )
    on_disk = shard_files(directory)
    for k in sorted(set(on_disk) - set(map(int, manifest["shards"]))):
        problems.append(f"{on_disk[k].name}: present but not listed in {MANIFEST} (another run's shard?)")
    seen: Counter = Counter()
    for key, entry in manifest["shards"].items():
        path = directory / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: listed in {MANIFEST} but missing; re-run the extraction")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{path.name}: sha256 differs from {MANIFEST} (the file changed after it was written); "
                            f"delete it and re-run the extraction")
        shard_problems, ids = _shard_problems(path, meta, entry, int(key))
        problems += shard_problems
        seen.update(ids)
    repeated = [item_id for item_id, n in seen.items() if n > 1]
    if repeated:
        problems.append(f"{len(repeated)} item ids appear more than once, e.g. {repeated[:3]}")
    return problems + _plan_problems(manifest, meta)
