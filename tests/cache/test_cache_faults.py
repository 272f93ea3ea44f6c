"""Masked-modality lists, full disks, other writers' temp files, the run lock and old caches."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cache_synth import make_meta, plan_shard, write_cache
from typer.testing import CliRunner

from hcm.cache import CacheBusy, CacheError, CacheWriter, FeatureCache, Masked, cache_info, masked_items, verify_cache
from hcm.cache.writer import exclusive_run
from hcm.cli import app
from hcm.core.files import atomic_write


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_masked_modalities_are_listed_per_shard_and_in_the_manifest(cache_dir: Path) -> None:
    masked = masked_items(cache_dir)
    with FeatureCache(cache_dir) as cache:
        expected = sorted((item.id, m) for item in (cache[i] for i in range(len(cache)))
                          for m, present in item.masks.items() if not present)
    assert sorted((m["id"], m["modality"]) for m in masked) == expected and expected
    assert {m["split"] for m in masked_items(cache_dir, split="test")} == {"test"}
    assert cache_info(cache_dir)["masked"] == masked
    assert verify_cache(cache_dir) == []


def test_explicit_masked_reasons_and_info_counts_per_reason_and_split(tmp_path: Path) -> None:
    meta = make_meta()
    writer = CacheWriter(tmp_path, meta)
    items, failures = plan_shard(meta, 0, 5)
    for item in items:
        item.masks["video"] = False
    masked = [Masked(item.id, item.split, "video", "file missing", f"/data/{item.id}.mp4") for item in items]
    writer.write_shard(0, items, failures, masked)
    writer.finalize(5)
    assert masked_items(tmp_path) == [m.to_dict() for m in masked]
    runner = CliRunner()
    text = runner.invoke(app, ["cache", "info", str(tmp_path)]).output
    assert "masked     5" in text and "video / file missing" in text and "(test 1, train 2, valid 2)" in text
    assert "/data/" not in text
    verbose = runner.invoke(app, ["cache", "info", str(tmp_path), "--verbose"]).output
    assert all(f"{item.id} [{item.split}] video file missing: /data/{item.id}.mp4" in verbose for item in items)
    info = json.loads(runner.invoke(app, ["cache", "info", str(tmp_path), "--json"]).output)
    assert info["masked"] == [m.to_dict() for m in masked] and "failures" in info


def test_verify_finds_a_masked_entry_that_the_items_contradict(tmp_path: Path) -> None:
    meta = make_meta()
    items, failures = plan_shard(meta, 0, 5)
    item = next(it for it in items if it.masks["text"])
    CacheWriter(tmp_path, meta).write_shard(0, items, failures, [Masked(item.id, item.split, "text", "empty")])
    assert any("not masked in the items" in problem for problem in verify_cache(tmp_path))


def test_a_full_disk_during_a_shard_write_keeps_the_previous_shard(cache_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    meta = make_meta()
    shard, manifest = cache_dir / "shard-00001.h5", cache_dir / "manifest.json"
    before = shard.read_bytes(), manifest.read_bytes()
    monkeypatch.setattr("hcm.cache.writer.write_shard_file", _disk_full)
    with pytest.raises(CacheError, match="the disk is full") as error:
        CacheWriter(cache_dir, meta).write_shard(1, *plan_shard(meta, 1, 23, seed=1))
    assert str(shard) in str(error.value) and "unchanged" in str(error.value)
    assert (shard.read_bytes(), manifest.read_bytes()) == before
    assert not list(cache_dir.glob(".shard-*.tmp"))
    assert verify_cache(cache_dir) == []


def test_a_full_disk_during_a_manifest_write_keeps_the_previous_manifest(cache_dir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = cache_dir / "manifest.json"
    before = manifest.read_bytes()

    def full_disk_write(path, text):
        tmp = path.parent / ".manifest.json.half.tmp"
        atomic_write(path, lambda t: (t.write_text(text[: len(text) // 2]), _disk_full()), temp=tmp)

    writer = CacheWriter(cache_dir, make_meta())
    monkeypatch.setattr("hcm.cache.manifest.write_text", full_disk_write)
    with pytest.raises(CacheError, match="the disk is full") as error:
        writer.finalize(23)
    assert str(manifest) in str(error.value)
    assert manifest.read_bytes() == before
    assert not list(cache_dir.glob(".manifest*.tmp"))


def test_a_shard_write_leaves_another_live_writers_temp_file(tmp_path: Path) -> None:
    meta = make_meta()
    writer = CacheWriter(tmp_path, meta)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".shard-00000.h5.{os.uname().nodename.replace('.', '_')}.{other.pid}.tmp"
        theirs.write_bytes(b"half a shard")
        legacy = tmp_path / f".shard-00000.h5.{other.pid}.tmp"  # the name without a host
        legacy.write_bytes(b"half a shard")
        writer.write_shard(0, *plan_shard(meta, 0, 5))
        CacheWriter(tmp_path, meta).finalize(5)
        assert theirs.exists() and legacy.exists()
    finally:
        other.kill()
        other.wait()
    CacheWriter(tmp_path, meta).finalize(5)  # the writer is dead now: its leftovers go
    assert not theirs.exists() and not legacy.exists()


def test_write_shard_once_keeps_a_shard_another_process_completed(cache_dir: Path) -> None:
    meta = make_meta()
    before = (cache_dir / "shard-00002.h5").read_bytes()
    assert not CacheWriter(cache_dir, meta).write_shard_once(2, *plan_shard(meta, 2, 23, seed=5))
    assert (cache_dir / "shard-00002.h5").read_bytes() == before


def test_a_second_run_with_the_same_tag_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with exclusive_run(tmp_path, "0-of-1"):
        with pytest.raises(CacheBusy) as error:
            with exclusive_run(tmp_path, "0-of-1"):
                pass
        with exclusive_run(tmp_path, "1-of-2"):
            pass
    message = str(error.value)
    assert f"pid {os.getpid()} on host {os.uname().nodename}" in message and str(tmp_path) in message
    with exclusive_run(tmp_path, "0-of-1"):  # released when the holder is done
        pass


def test_an_unwritable_cache_folder_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "readonly" / "cache"

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(CacheError, match="cannot write to the cache folder") as error:
        CacheWriter(target, make_meta())
    assert str(target) in str(error.value)


def test_a_cache_of_the_previous_schema_is_refused_with_the_way_out(tmp_path: Path) -> None:
    write_cache(tmp_path, n_planned=5)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="re-extract"):
        FeatureCache(tmp_path)
