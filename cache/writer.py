"""Writing a cache shard by shard, atomically and safely from several processes at once.

A shard is written under a temporary name in the cache directory, flushed and fsynced, then
``os.replace``d onto ``shard-KKKKK.h5``: whatever stops the process, a shard on disk is complete
or absent. The manifest is then merged under an exclusive file lock. Extraction resumes by
asking ``shard_done(k)`` and skipping the shards that exist.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hcm.cache.manifest import (
    fsync_dir, load_manifest, manifest_lock, new_manifest, read_manifest, rebuild_manifest, shard_entry,
    shard_files, summarize, write_manifest, check_meta,
)
from hcm.cache.schema import CacheError, CacheMeta, Failure, Item
from hcm.cache.shard import check_item, read_header, shard_name, write_shard_file

log = logging.getLogger(__name__)
TMP_SUFFIX = ".tmp"


def _temp_path(directory: Path, k: int) -> Path:
    return directory / f".{shard_name(k)}.{os.getpid()}{TMP_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_temps(directory: Path, k: int | None = None) -> None:
    """Delete leftover temp shards: all of shard ``k``, or (``k`` None) those of dead processes."""
    pattern = f".{shard_name(k)}.*{TMP_SUFFIX}" if k is not None else f".shard-*{TMP_SUFFIX}"
    for path in directory.glob(pattern):
        pid = path.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if k is not None or (pid.isdigit() and not _pid_alive(int(pid))):
            path.unlink(missing_ok=True)


class CacheWriter:
    """Creates (or reopens, to resume) the cache in ``directory`` for the extraction ``meta``.

    Reopening a cache made with another recipe hash raises CacheError naming both hashes.
    Several processes may write disjoint shards of one cache at the same time.
    """

    def __init__(self, directory: str | os.PathLike, meta: CacheMeta) -> None:
        self.directory = Path(directory)
        self.meta = meta
        self.directory.mkdir(parents=True, exist_ok=True)
        with manifest_lock(self.directory):
            manifest = read_manifest(self.directory)
            if manifest is None and shard_files(self.directory):
                manifest = rebuild_manifest(self.directory)
            if manifest is None:
                manifest = new_manifest(meta)
            check_meta(self.directory, manifest, meta)
            write_manifest(self.directory, manifest)
        _remove_temps(self.directory)

    def path(self, k: int) -> Path:
        return self.directory / shard_name(k)

    def shard_done(self, k: int) -> bool:
        """Whether a complete shard ``k`` of this recipe exists (registering it if the manifest missed it)."""
        path = self.path(k)
        if not path.is_file():
            return False
        entry = load_manifest(self.directory)["shards"].get(str(k))
        if entry is not None and entry["bytes"] == path.stat().st_size:
            return True
        try:
            header = read_header(path)
        except CacheError as exc:
            log.warning("shard %d will be rewritten: %s", k, exc)
            return False
        if header.recipe_hash != self.meta.recipe_hash:
            log.warning("shard %s has recipe hash %s, not %s: it will be rewritten", path, header.recipe_hash,
                        self.meta.recipe_hash)
            return False
        self._register(header.path)
        return True

    def validate(self, item: Item) -> None:
        """Raise CacheError if ``item`` cannot be stored (lets an extractor turn it into a Failure)."""
        check_item(self.meta, item)

    def write_shard(self, k: int, items: list[Item], failures: list[Failure]) -> None:
        """Write shard ``k`` (its items and failures) atomically and record it in the manifest."""
        if k < 0:
            raise CacheError(f"shard index {k} must be >= 0")
        if len(items) + len(failures) > self.meta.shard_size:
            raise CacheError(
                f"shard {k} got {len(items)} items and {len(failures)} failures, more than its "
                f"{self.meta.shard_size} planned positions"
            )
        _remove_temps(self.directory, k)
        tmp, final = _temp_path(self.directory, k), self.path(k)
        try:
            write_shard_file(tmp, self.meta, k, items, failures)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.directory)
        self._register(final)

    def _register(self, path: Path) -> None:
        header = read_header(path)
        entry = shard_entry(header)
        with manifest_lock(self.directory):
            manifest = load_manifest(self.directory, save=False)
            manifest["shards"][str(header.shard_index)] = entry
            write_manifest(self.directory, summarize(manifest))

    def finalize(self, n_planned: int) -> None:
        """Record the plan size; the cache is complete once every shard of the plan exists."""
        n_shards = self.meta.n_shards(n_planned)
        with manifest_lock(self.directory):
            manifest = load_manifest(self.directory, save=False)
            manifest["n_planned"] = int(n_planned)
            summarize(manifest)
            write_manifest(self.directory, manifest)
        beyond = [k for k in map(int, manifest["shards"]) if k >= n_shards]
        if beyond:
            log.warning("cache %s has shards %s beyond the plan of %d items", self.directory, beyond, n_planned)
        for key, entry in manifest["shards"].items():
            expected = self.meta.planned_in_shard(int(key), n_planned)
            if entry["items"] + len(entry["failures"]) != expected:
                log.warning("shard %s holds %d items + %d failures, the plan gives it %d positions", key,
                            entry["items"], len(entry["failures"]), expected)
        _remove_temps(self.directory)
