"""Writing a cache shard by shard, atomically and safely from several processes at once.

A shard is written under a temporary name in the cache directory (``.shard-KKKKK.h5.<host>.<pid>.tmp``),
flushed and fsynced, then ``os.replace``d onto ``shard-KKKKK.h5``: whatever stops the process (a
kill, a full disk), a shard on disk is complete or absent, and a shard written before stays as it
was. Each process removes only its own temporary files and those of dead processes of its host.
The manifest is then merged under an exclusive file lock. Extraction resumes by asking
``shard_done(k)`` and skipping the shards that exist; ``write_shard_once`` writes a shard only
if no other process wrote it meanwhile (a byte-range lock per shard serializes the two), and
``exclusive_run`` keeps a second extraction with the same shard assignment out of a folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from hcm.cache.manifest import (
    check_meta,
    load_manifest,
    manifest_lock,
    new_manifest,
    now,
    read_manifest,
    rebuild_manifest,
    shard_entry,
    shard_files,
    summarize,
    write_failed,
    write_manifest,
)
from hcm.cache.schema import CacheError, CacheMeta, Failure, Item, Masked
from hcm.cache.shard import check_item, read_header, shard_name, write_shard_file
from hcm.core.files import atomic_write, open_lock

log = logging.getLogger(__name__)
TMP_SUFFIX = ".tmp"
SHARD_LOCKS = ".shards.lock"  # byte k locked while shard k is being written


class CacheBusy(CacheError):
    """Another process holds the folder for the same work; the message names it."""


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "localhost"


def _temp_path(directory: Path, k: int) -> Path:
    return directory / f".{shard_name(k)}.{_host()}.{os.getpid()}{TMP_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_owner(path: Path) -> tuple[str, int] | None:
    """``(host, pid)`` of a temp shard's writer (names without a host are from this host)."""
    owner = path.name[: -len(TMP_SUFFIX)].split(".h5.", 1)[-1]
    host, _, pid = owner.rpartition(".")
    return (host or _host(), int(pid)) if pid.isdigit() else None


def _remove_temps(directory: Path, k: int | None = None) -> None:
    """Delete leftover temp shards (of shard ``k``, or all) written by dead processes of this host.

    Another live process's temp file is never touched: it may be writing that shard right now.
    """
    pattern = f".{shard_name(k)}.*{TMP_SUFFIX}" if k is not None else f".shard-*{TMP_SUFFIX}"
    for path in directory.glob(pattern):
        owner = _temp_owner(path)
        if owner is not None and owner[0] == _host() and (owner[1] == os.getpid() or not _pid_alive(owner[1])):
            path.unlink(missing_ok=True)


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` and check that files can be made in it; CacheError naming the path if not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test.{_host()}.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        where = exc.filename or directory
        raise CacheError(
            f"cannot write to the cache folder {directory} ({where}: {exc.strerror or exc}). Choose a writable "
            f"folder (hcm extract --out) or fix its permissions."
        ) from exc


def _holder(path: Path) -> str:
    """Who holds an ``exclusive_run`` lock, as its lock file says (retried while it is being written)."""
    for _ in range(20):
        try:
            info = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            info = None
        if info:
            return f"pid {info['pid']} on host {info['host']} since {info['started']} ({info['command']})"
        time.sleep(0.05)
    return "another process (it has not written its name yet)"


@contextlib.contextmanager
def exclusive_run(directory: Path, tag: str) -> Iterator[None]:
    """Hold ``directory``'s lock for ``tag`` for a whole run; CacheBusy at once if another process has it.

    The lock file records the holder (pid, host, start time, command) for that message; the
    operating system frees the lock when the holder ends, however it ends.
    """
    path = directory / f".run-{tag}.lock"
    with open_lock(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusy(
                f"{directory} is being written by {_holder(path)}. Wait for it to finish (then re-run to check "
                f"that nothing is left), or give each process its own part with --num-shards N --shard-index I."
            ) from None
        try:
            handle.truncate(0)
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                                     "command": " ".join(sys.argv)[:300]}))
            handle.flush()
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


class CacheWriter:
    """Creates (or reopens, to resume) the cache in ``directory`` for the extraction ``meta``.

    Reopening a cache made with another recipe hash raises CacheError naming both hashes.
    Several processes may write disjoint shards of one cache at the same time. A new manifest records
    where the cache came from (``provenance``: hcm version, git commit, command line, torch, ``device``;
    ``source``: where the raw data was read).
    """

    def __init__(self, directory: str | os.PathLike, meta: CacheMeta, device: str | None = None,
                 source: dict | None = None) -> None:
        self.directory = Path(directory)
        self.meta = meta
        prepare_directory(self.directory)
        with manifest_lock(self.directory):
            manifest = read_manifest(self.directory)
            if manifest is None and shard_files(self.directory):
                manifest = rebuild_manifest(self.directory)
            if manifest is None:
                manifest = new_manifest(meta, device, source)
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

    @contextlib.contextmanager
    def _shard_lock(self, k: int) -> Iterator[None]:
        """Hold byte ``k`` of the shard lock file (waits while another process writes shard ``k``)."""
        with open_lock(self.directory / SHARD_LOCKS) as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX, 1, k, os.SEEK_SET)
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN, 1, k, os.SEEK_SET)

    def write_shard(self, k: int, items: list[Item], failures: list[Failure],
                    masked: list[Masked] | None = None) -> None:
        """Write shard ``k`` (its items, failures and masked modalities) atomically; record it in the manifest.

        ``masked`` defaults to every modality an item marks absent, with its note as the reason.
        A failed write (disk full) leaves the previous shard file as it was and raises CacheError.
        """
        self._check_shard(k, items, failures)
        with self._shard_lock(k):
            self._write(k, items, failures, masked)

    def write_shard_once(self, k: int, items: list[Item], failures: list[Failure],
                         masked: list[Masked] | None = None) -> bool:
        """Like ``write_shard``, unless another process completed shard ``k`` meanwhile: then False."""
        self._check_shard(k, items, failures)
        with self._shard_lock(k):
            if self.shard_done(k):
                log.info("shard %d was written by another process meanwhile; keeping that one", k)
                return False
            self._write(k, items, failures, masked)
        return True

    def _check_shard(self, k: int, items: list[Item], failures: list[Failure]) -> None:
        if k < 0:
            raise CacheError(f"shard index {k} must be >= 0")
        if len(items) + len(failures) > self.meta.shard_size:
            raise CacheError(
                f"shard {k} got {len(items)} items and {len(failures)} failures, more than its "
                f"{self.meta.shard_size} planned positions"
            )

    def _write(self, k: int, items: list[Item], failures: list[Failure], masked: list[Masked] | None) -> None:
        _remove_temps(self.directory, k)
        final = self.path(k)
        masked = default_masked(items) if masked is None else masked
        try:
            atomic_write(final, lambda tmp: write_shard_file(tmp, self.meta, k, items, failures, masked),
                         temp=_temp_path(self.directory, k))
        except OSError as exc:
            raise write_failed(final, exc) from exc
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


def default_masked(items: list[Item]) -> list[Masked]:
    """Every modality the items mark absent, with the item's note on it as the reason."""
    return [Masked(item.id, item.split, modality, item.notes.get(modality, "masked"))
            for item in items for modality, present in item.masks.items() if not present]
