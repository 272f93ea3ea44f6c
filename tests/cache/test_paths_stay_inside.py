"""A cache folder cannot make hcm read or write outside it: manifest shard entries name only the
cache's own shard files, and lock and temporary files are never opened through symbolic links."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cache_synth import make_meta, plan_shard
from typer.testing import CliRunner

from hcm.cache import CacheError, CacheWriter, FeatureCache, cache_info, verify_cache
from hcm.cache.manifest import manifest_lock
from hcm.cache.writer import _temp_path, exclusive_run
from hcm.cli import app
from hcm.core.errors import UsageError

runner = CliRunner()


def _point_shard_at(cache_dir: Path, target: str) -> None:
    path = cache_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"]["1"]["file"] = target
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("target", ["../outside/x.h5", "/etc/hostname", "shard-00002.h5", "sub/shard-00001.h5"])
def test_a_manifest_naming_another_file_is_refused(cache_dir: Path, target: str) -> None:
    outside = cache_dir.parent / "outside"
    outside.mkdir()
    (outside / "x.h5").write_bytes((cache_dir / "shard-00001.h5").read_bytes())
    _point_shard_at(cache_dir, target)
    message = rf"lists shard '1' as the file '{target}', not shard-00001.h5 in the cache folder"
    for read in (cache_info, FeatureCache):
        with pytest.raises(CacheError, match=message):
            read(cache_dir)
    problems = verify_cache(cache_dir)  # reported, and the check goes on from the shards themselves
    assert any(re.search(message, p) for p in problems), problems
    result = runner.invoke(app, ["cache", "verify", str(cache_dir)])
    assert result.exit_code != 0 and "not shard-00001.h5" in result.output and "/etc" not in result.output.split(
        "not shard")[1]


def test_a_shard_linked_out_of_the_folder_is_refused(cache_dir: Path) -> None:
    outside = cache_dir.parent / "elsewhere.h5"
    (cache_dir / "shard-00001.h5").rename(outside)
    (cache_dir / "shard-00001.h5").symlink_to(outside)
    for read in (verify_cache, cache_info, FeatureCache):
        with pytest.raises(CacheError, match="symbolic link to .*elsewhere.h5, outside the cache folder"):
            read(cache_dir)


@pytest.mark.parametrize("lock", [".manifest.lock", ".run-extract.lock", ".shards.lock"])
def test_lock_files_are_never_opened_through_a_link(tmp_path: Path, lock: str) -> None:
    cache_dir, victim = tmp_path / "cache", tmp_path / "victim"
    cache_dir.mkdir()
    (cache_dir / lock).symlink_to(victim)
    meta = make_meta()
    with pytest.raises(UsageError, match=rf"lock file .*{lock} is a symbolic link"):
        if lock == ".manifest.lock":
            with manifest_lock(cache_dir):
                pass
        elif lock.startswith(".run-"):
            with exclusive_run(cache_dir, "extract"):
                pass
        else:
            CacheWriter(cache_dir, meta).write_shard(0, *plan_shard(meta, 0, 5))
    assert not victim.exists()


def test_a_planted_temporary_file_link_is_replaced_not_followed(tmp_path: Path) -> None:
    cache_dir, victim = tmp_path / "cache", tmp_path / "victim"
    cache_dir.mkdir()
    victim.write_text("keep")
    _temp_path(cache_dir, 0).symlink_to(victim)
    meta = make_meta()
    CacheWriter(cache_dir, meta).write_shard(0, *plan_shard(meta, 0, 5))
    assert victim.read_text() == "keep" and (cache_dir / "shard-00000.h5").is_file()
    assert not (cache_dir / "shard-00000.h5").is_symlink()
