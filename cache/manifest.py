"""``manifest.json``: the cache's table of contents, merged safely by concurrent writers.

The manifest records the cache metadata, the recipe and its hash, and one entry per written
shard (item count, per-split counts, sha256, size, failures, masked modalities). Totals (counts,
failures, masked, completeness) are always recomputed from the shard entries, so merging is
order-independent.
Every update takes an exclusive ``fcntl.flock`` on ``.manifest.lock``, reads, modifies, and
replaces the file atomically; the manifest can also be rebuilt from the shards alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from hcm import __version__
from hcm.cache.schema import (
    SCHEMA_VERSION,
    CacheError,
    CacheMeta,
    RecipeMismatch,
    check_recipe_version,
    recipe_changes,
    weight_changes,
)
from hcm.cache.shard import SHARD_GLOB, ShardHeader, read_header, shard_index, shard_name
from hcm.core.files import leads_out, open_lock, write_text
from hcm.core.provenance import provenance

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"
log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def shard_files(directory: Path) -> dict[int, Path]:
    """The complete shard files present in ``directory`` (temp files are not listed); CacheError for
    a shard name that is a symbolic link leading out of the folder."""
    found = {}
    for path in directory.glob(SHARD_GLOB):
        k = shard_index(path)
        if k is not None:
            check_inside(directory, path)
            found[k] = path
    return dict(sorted(found.items()))


@contextlib.contextmanager
def manifest_lock(directory: Path) -> Iterator[None]:
    """Hold the cache's exclusive lock (blocks until other writers release it)."""
    with open_lock(directory / LOCK) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(directory: Path) -> dict | None:
    """The parsed manifest, ``None`` when there is none; CacheError when it is unreadable or too new."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(
            f"{path} cannot be parsed ({exc}); delete it: opening the cache rebuilds it from the shards"
        ) from exc
    if not isinstance(manifest, dict):
        raise CacheError(f"{path} holds a {type(manifest).__name__}, not a manifest; delete it: opening the cache "
                         f"rebuilds it from the shards")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CacheError(
            f"{path} has cache schema version {version}, this hcm ({__version__}) reads version "
            f"{SCHEMA_VERSION}; re-extract the cache with this hcm or use a matching hcm release"
        )
    check_shard_entries(directory, manifest)
    return manifest


def check_shard_entries(directory: Path, manifest: dict) -> None:
    """Every shard entry's ``file`` is the shard's own name (``shard-KKKKK.h5``) inside ``directory``:
    no other name, no path (absolute or with ``..``), no symbolic link leading out of the folder."""
    shards = manifest.get("shards")
    if not isinstance(shards, dict):
        raise CacheError(f"{directory / MANIFEST} has no shard table; delete it: opening the cache rebuilds it")
    for key, entry in shards.items():
        name = entry.get("file") if isinstance(entry, dict) else None
        expected = shard_name(int(key)) if str(key).isdigit() else None
        if not isinstance(name, str) or name != expected:
            raise CacheError(
                f"{directory / MANIFEST} lists shard {key!r} as the file {name!r}, not {expected or 'shard-KKKKK.h5'} "
                f"in the cache folder; hcm reads only the cache's own shard files. Delete the manifest: opening the "
                f"cache rebuilds it from the shards"
            )
        check_inside(directory, directory / name)


def check_inside(directory: Path, path: Path) -> None:
    """CacheError when ``path`` is a symbolic link that leads out of ``directory``."""
    if path.is_symlink() and leads_out(directory, path):
        raise CacheError(f"{path} is a symbolic link to {path.resolve()}, outside the cache folder; hcm "
                         f"reads only files inside it. Replace the link with the shard file")


def write_failed(path: Path, error: OSError) -> CacheError:
    """The error for a file that could not be written; the file on disk was left as it was."""
    cause = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror or str(error)
    return CacheError(
        f"could not write {path}: {cause}. {path.name} on disk is unchanged (its previous version, or "
        f"none). Free space (or fix the folder's permissions) and re-run the same command: it resumes."
    )


def write_manifest(directory: Path, manifest: dict) -> None:
    """Replace the manifest atomically (temp file, fsync, rename); call under ``manifest_lock``.

    A failed write (disk full, permissions) leaves the previous manifest in place and raises CacheError.
    """
    manifest["updated"] = now()
    text = json.dumps(manifest, indent=1)
    try:
        write_text(directory / MANIFEST, text)
    except OSError as exc:
        raise write_failed(directory / MANIFEST, exc) from exc


def new_manifest(meta: CacheMeta, device: str | None = None, source: dict | None = None) -> dict:
    """A manifest with no shards yet; ``source`` says where the raw data was read (``data_root``),
    which the lookups of a cached item's media use (``hcm explain``); it is no part of the recipe."""
    stamp = now()
    manifest = {
        "schema_version": SCHEMA_VERSION, "hcm_version": __version__, **meta.to_dict(),
        "recipe_hash": meta.recipe_hash, "n_planned": None, "complete": False,
        "counts": {}, "n_items": 0, "shards": {}, "failures": [], "masked": [], "created": stamp, "updated": stamp,
        "provenance": provenance(device),
    }
    if source:
        manifest["source"] = source
    return manifest


def shard_entry(header: ShardHeader) -> dict:
    """The manifest's record of one shard file."""
    return {
        "file": header.path.name, "items": header.n_items, "counts": dict(Counter(header.splits)),
        "sha256": sha256_file(header.path), "bytes": header.path.stat().st_size, "failures": header.failures,
        "masked": header.masked,
    }


def summarize(manifest: dict) -> dict:
    """Recompute the totals of ``manifest`` from its shard entries (in place; returned for chaining)."""
    shards = dict(sorted(manifest["shards"].items(), key=lambda kv: int(kv[0])))
    counts: Counter = Counter()
    for entry in shards.values():
        counts.update(entry["counts"])
    manifest["shards"] = shards
    manifest["counts"] = dict(sorted(counts.items()))
    manifest["n_items"] = sum(counts.values())
    manifest["failures"] = [failure for entry in shards.values() for failure in entry["failures"]]
    manifest["masked"] = [masked for entry in shards.values() for masked in entry.get("masked", [])]
    planned = manifest.get("n_planned")
    if planned is not None:
        n_shards = -(-planned // manifest["shard_size"])
        manifest["complete"] = all(str(k) in shards for k in range(n_shards))
    return manifest


def check_meta(directory: Path, manifest: dict, meta: CacheMeta) -> None:
    """Refuse to mix extraction settings in one cache; the error names both values and the way out."""
    check_recipe_version(CacheMeta.from_dict(manifest), directory)
    changed = weight_changes(manifest.get("recipe") or {}, meta.recipe)
    if changed:
        raise CacheError(f"cache {directory} was extracted with other weights: {'; '.join(changed)}. Pass the weight "
                         f"files it was made with to resume it, or extract into another --out folder.")
    what = [f"{key}: cache has {manifest.get(key)!r}, this run has {value!r}" for key, value in meta.to_dict().items()
            if key in ("dataset", "task", "classes", "shard_size") and manifest.get(key) != value]
    if manifest.get("recipe_hash") != meta.recipe_hash:
        named = recipe_changes(manifest.get("recipe") or {}, meta.recipe) or ["the feature streams differ"]
        what.insert(0, f"recipe hash {str(manifest.get('recipe_hash'))[:12]} -> {meta.recipe_hash[:12]}, "
                       f"cache -> this run: {', '.join(named)}")
    if what:
        diffs = "; ".join(what)
        raise RecipeMismatch(
            f"cache {directory} was written with other settings ({diffs}). Extract into another "
            f"directory (another profile name), or delete {directory} to re-extract from scratch."
        )


def rebuild_manifest(directory: Path) -> dict:
    """A manifest made from the shard files alone (the plan size is unknown until the next finalize)."""
    files = shard_files(directory)
    if not files:
        raise CacheError(f"{directory} holds neither {MANIFEST} nor shard files: it is not an hcm cache")
    headers = [read_header(path) for path in files.values()]
    first = headers[0]
    manifest = new_manifest(first.meta)
    for header in headers:
        if header.recipe_hash != first.recipe_hash:
            raise CacheError(
                f"shards disagree on the recipe: {first.path.name} has {first.recipe_hash}, {header.path.name} "
                f"has {header.recipe_hash}; delete the shards of the unwanted recipe and re-run extraction"
            )
        if header.path.name != shard_name(header.shard_index):
            raise CacheError(f"{header.path} says it is shard {header.shard_index}; rename or delete it")
        manifest["shards"][str(header.shard_index)] = shard_entry(header)
    log.warning("rebuilt the manifest of %s from %d shard files", directory, len(headers))
    return summarize(manifest)


def load_manifest(directory: Path, save: bool = True) -> dict:
    """The manifest of ``directory``, rebuilt from the shards (and saved if possible) when missing."""
    if not directory.is_dir():
        state = "is a file, not a cache folder" if directory.exists() else "does not exist"
        raise CacheError(f"cache directory {directory} {state}; run `hcm extract` first or check the path")
    manifest = read_manifest(directory)
    if manifest is not None:
        return manifest
    manifest = rebuild_manifest(directory)
    if save:
        try:
            with manifest_lock(directory):
                if read_manifest(directory) is None:
                    write_manifest(directory, manifest)
        except OSError as exc:
            log.warning("could not save the rebuilt manifest of %s (%s); using it in memory", directory, exc)
    return manifest
