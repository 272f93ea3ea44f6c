"""The writer: atomic shards under SIGKILL, resume, concurrent writers, recipe checks, bad items."""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cache_synth import assert_items_equal, make_meta, plan_shard, synthetic_item, write_cache

from hcm.cache import CacheError, CacheWriter, Failure, FeatureCache, cache_info, verify_cache
from hcm.cache.schema import CacheMeta
from hcm.cache.shard import read_header

CHILD = Path(__file__).resolve().parents[1] / "helpers" / "cache_kill_child.py"


def _run_child(directory: Path, *, kill_at: int | None = None) -> bool:
    """Run the child writer; with ``kill_at``, SIGKILL it while shard ``kill_at`` is half written
    (the child waits inside the atomic write, its temp file on disk and not yet renamed).

    Returns whether the kill landed while the shard's temp file existed.
    """
    args = [sys.executable, str(CHILD), str(directory), "120", "30"]
    if kill_at is None:
        assert subprocess.run(args, timeout=120).returncode == 0
        return False
    proc = subprocess.Popen([*args, str(kill_at)], stdout=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout)
        paused = next((line for line in lines if line.strip() == f"paused {kill_at}"), None)
        mid_write = paused is not None and any(directory.glob(f".shard-{kill_at:05d}.h5.*.tmp"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    return mid_write


def test_sigkill_mid_shard_leaves_no_partial_shard_and_resume_matches(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    _run_child(clean)
    assert _run_child(killed, kill_at=2), "the kill did not land during the shard write"
    visible = sorted(p.name for p in killed.glob("shard-*.h5"))
    assert "shard-00002.h5" not in visible and visible == ["shard-00000.h5", "shard-00001.h5"]
    for name in visible:
        read_header(killed / name)  # complete shards only
    with FeatureCache(killed) as partial:
        assert len(partial) == 60
    _run_child(killed)
    assert not list(killed.glob(".shard-*.tmp")), "the resumed run left temp files"
    assert verify_cache(killed) == []
    with FeatureCache(clean) as a, FeatureCache(killed) as b:
        assert a.ids == b.ids and len(a) == 120
        for x, y in zip(a, b):
            assert_items_equal(x, y)
    assert cache_info(killed)["complete"]


def _write_every_nth(directory: Path, n_workers: int, index: int, n_planned: int) -> None:
    meta = make_meta(shard_size=3)
    writer = CacheWriter(directory, meta)
    for k in range(index, meta.n_shards(n_planned), n_workers):
        writer.write_shard(k, *plan_shard(meta, k, n_planned))
    writer.finalize(n_planned)


def test_concurrent_writers_of_disjoint_shards_build_a_correct_manifest(tmp_path: Path) -> None:
    n_planned, n_workers = 40, 4
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_every_nth, args=(tmp_path, n_workers, i, n_planned)) for i in range(n_workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(map(int, manifest["shards"])) == list(range(14)) and manifest["complete"]
    expected_failures = [{"id": synthetic_item(i).id, "reason": f"no audio stream in clip {i}", "split": "",
                          "detail": ""}
                         for i in range(n_planned) if i % 7 == 6]
    assert manifest["failures"] == expected_failures
    assert manifest["n_items"] == n_planned - len(expected_failures)
    assert sum(manifest["counts"].values()) == manifest["n_items"]
    assert verify_cache(tmp_path) == []


def test_reopening_with_another_recipe_names_both_hashes_and_the_setting(tmp_path: Path) -> None:
    write_cache(tmp_path, n_planned=5)
    other = make_meta(recipe={"fps": 2, "window": 2})
    with pytest.raises(CacheError) as err:
        CacheWriter(tmp_path, other)
    assert f"{make_meta().recipe_hash[:12]} -> {other.recipe_hash[:12]}" in str(err.value)
    assert "fps 1 -> 2" in str(err.value)
    assert "another directory" in str(err.value)
    with pytest.raises(CacheError, match="shard_size"):
        CacheWriter(tmp_path, make_meta(shard_size=7))


def test_resume_skips_done_shards_and_registers_unrecorded_ones(tmp_path: Path) -> None:
    meta = write_cache(tmp_path, n_planned=12)
    writer = CacheWriter(tmp_path, meta)
    assert [writer.shard_done(k) for k in range(4)] == [True, True, True, False]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["shards"]["1"]  # as if killed between the rename and the manifest update
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert writer.shard_done(1)
    assert "1" in json.loads((tmp_path / "manifest.json").read_text())["shards"]
    (tmp_path / "shard-00002.h5").write_bytes(b"not hdf5")
    assert not writer.shard_done(2)


def test_stale_temp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    meta = write_cache(tmp_path, n_planned=10)
    stale = tmp_path / ".shard-00001.h5.999999999.tmp"
    stale.write_bytes(b"half a shard")
    assert verify_cache(tmp_path) == []
    with FeatureCache(tmp_path) as cache:
        assert len(cache) == 9
    CacheWriter(tmp_path, meta).write_shard(1, *plan_shard(meta, 1, 10))
    assert not stale.exists()


def test_missing_manifest_is_rebuilt_from_shards(tmp_path: Path) -> None:
    write_cache(tmp_path, n_planned=12)
    before = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").unlink()
    assert any("manifest.json is missing" in p for p in verify_cache(tmp_path))
    with FeatureCache(tmp_path) as cache:
        assert len(cache) == before["n_items"]
    after = json.loads((tmp_path / "manifest.json").read_text())
    assert after["shards"] == before["shards"] and after["failures"] == before["failures"]
    assert after["n_planned"] is None  # known again once the extraction finalizes
    CacheWriter(tmp_path, make_meta()).finalize(12)
    assert verify_cache(tmp_path) == []


@pytest.mark.parametrize("features, message", [
    ({"roberta": np.zeros((2, 15))}, "expected \\(n, 16\\)"),
    ({"token_word": np.array([0.5])}, "exact"),
    ({"mel": np.full((1, 8), 1e6)}, "NaN or Inf"),
    ({"text_edges": np.array([[2**40, 0]])}, "range"),
    ({"extra": np.zeros(1)}, "unexpected \\['extra'\\]"),
])
def test_bad_items_are_refused_with_the_item_and_feature(tmp_path: Path, features: dict, message: str) -> None:
    writer = CacheWriter(tmp_path, make_meta())
    item = synthetic_item(0)
    item.features.update(features)
    with pytest.raises(CacheError, match=message):
        writer.validate(item)
    with pytest.raises(CacheError, match=message):
        writer.write_shard(0, [item], [])
    assert not list(tmp_path.glob("shard-*")) and not list(tmp_path.glob(".shard-*"))


def test_a_shard_cannot_hold_more_than_its_plan(tmp_path: Path) -> None:
    writer = CacheWriter(tmp_path, make_meta(shard_size=2))
    items = [synthetic_item(i) for i in range(2)]
    with pytest.raises(CacheError, match="more than its 2 planned"):
        writer.write_shard(0, items, [Failure("x", "y")])


def test_finalize_marks_complete_only_when_all_planned_shards_exist(tmp_path: Path) -> None:
    meta = make_meta(shard_size=4)
    writer = CacheWriter(tmp_path, meta)
    writer.write_shard(0, *plan_shard(meta, 0, 10))
    writer.write_shard(2, *plan_shard(meta, 2, 10))
    writer.finalize(10)
    assert not cache_info(tmp_path)["complete"]
    assert any("shard 1 of the plan" in p for p in verify_cache(tmp_path))
    writer.write_shard(1, *plan_shard(meta, 1, 10))
    info = cache_info(tmp_path)
    assert info["complete"] and info["n_planned"] == 10 and info["n_items"] == 9


def test_a_recipe_mismatch_names_each_setting_with_both_values(tmp_path) -> None:
    from hcm_tiny_cache import build_cache

    from hcm.cache.schema import recipe_changes

    assert recipe_changes({"frames": 4, "profile": {"segments": 3, "name": "tiny"}},
                          {"frames": 8, "profile": {"segments": 8, "name": "tiny"}, "limit": 5}) == [
        "frames 4 -> 8", "limit absent -> 5", "profile.segments 3 -> 8"]
    cache = build_cache(tmp_path / "cache", n=12)
    other = CacheMeta.from_dict(json.loads((cache / "manifest.json").read_text()))
    other.recipe = {"synthetic": 1}
    with pytest.raises(CacheError, match=r"recipe hash \w+ -> \w+, cache -> this run: synthetic 0 -> 1"):
        CacheWriter(cache, other)
