"""``hcm extract`` end to end through the CLI on the generated sample corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cache import FeatureCache
from hcm.cli import app
from hcm.pipeline.sample import make_sample


@pytest.mark.slow
def test_extract_sample_then_resume(workdir: Path) -> None:
    make_sample("mosei", workdir / "data" / "sample-mosei", n=9, seed=3, progress=False)
    runner = CliRunner()
    args = ["extract", "--dataset", "sample", "--frames", "2", "--segments", "2", "--workers", "0", "--limit", "6",
            "--shard-size", "3", "--quiet"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "6 extracted" in first.output
    out = workdir / "features" / "sample" / "tiny"
    with FeatureCache(out) as cache:
        assert len(cache) == 6 and cache.meta.profile == "tiny"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 already complete" in again.output


@pytest.mark.slow
def test_extract_precision_option(workdir: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "mosei", tmp_path / "cache"
    make_sample("mosei", root, n=6, seed=3, progress=False)
    runner = CliRunner()
    args = _extract_args(root, out)
    first = runner.invoke(app, [*args, "--precision", "bfloat16"])
    assert first.exit_code == 0, first.output
    assert "(tiny, bfloat16)" in first.output
    info = runner.invoke(app, ["cache", "info", str(out)])
    assert info.exit_code == 0 and "precision  bfloat16" in info.output
    other = runner.invoke(app, [*args, "--precision", "float32"])
    assert other.exit_code == 1 and "precision bfloat16 -> float32" in other.output
    wrong = runner.invoke(app, [*args, "--precision", "half"])
    assert wrong.exit_code == 2 and "auto" in wrong.output and "bfloat16" in wrong.output


def test_wrong_root_is_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["extract", "--dataset", "meld", "--data-root", str(tmp_path / "nowhere"),
                                      "--profile", "tiny", "--quiet"])
    assert result.exit_code == 2
    assert "does not hold the expected layout" in result.output and "Traceback" not in result.output


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["extract", "--help"])
    assert result.exit_code == 0
    for option in ("--weights-dir", "--num-shards", "--strict", "--limit", "--splits", "--split-file", "--precision"):
        assert option in result.output


def _extract_args(root: Path, out: Path) -> list[str]:
    return ["extract", "--dataset", "mosei", "--data-root", str(root), "--out", str(out), "--profile", "tiny",
            "--frames", "2", "--segments", "2", "--workers", "0", "--shard-size", "3", "--quiet"]


def test_two_extractions_into_one_folder_never_clash(workdir: Path, tmp_path: Path) -> None:
    """While one extraction holds the folder, another stops at once naming it; then it runs whole.

    The holder is this test process, taking the lock an `hcm extract` of one worker takes
    (``shards-0-of-1``), so the overlap is certain rather than left to two processes' timing."""
    import os
    import socket
    import subprocess
    import sys

    from hcm.cache import verify_cache
    from hcm.cache.writer import exclusive_run

    root, out = tmp_path / "mosei", tmp_path / "cache"
    make_sample("mosei", root, n=9, seed=3, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "hcm", *_extract_args(root, out)]
    out.mkdir()
    with exclusive_run(out, "shards-0-of-1"):
        refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 1, refused
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in refused.stderr and str(out) in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not list(out.glob("shard-*.h5")), "the refused extraction wrote shards"
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done
    assert verify_cache(out) == []
    with FeatureCache(out) as cache:
        assert len(cache) == 9


def test_an_unwritable_output_folder_is_one_error_before_any_work(workdir: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    root = tmp_path / "mosei"
    make_sample("mosei", root, n=6, seed=3, progress=False)
    (tmp_path / "file").write_text("not a folder")

    def no_encoders(*args: object) -> None:
        raise AssertionError("encoders were built before the output folder was checked")

    monkeypatch.setattr("hcm.pipeline.extract.build_encoders", no_encoders)
    result = CliRunner().invoke(app, _extract_args(root, tmp_path / "file" / "cache"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write to the cache folder" in result.output and str(tmp_path / "file" / "cache") in result.output


def test_a_full_disk_during_extraction_is_a_clear_error(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    import errno

    root, out = tmp_path / "mosei", tmp_path / "cache"
    make_sample("mosei", root, n=6, seed=3, progress=False)

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("hcm.cache.writer.write_shard_file", disk_full)
    result = CliRunner().invoke(app, _extract_args(root, out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the disk is full" in result.output and str(out / "shard-00000.h5") in result.output
    assert not list(out.glob("shard-*")) and not list(out.glob(".shard-*.tmp"))


def test_an_unreadable_data_root_is_one_error_naming_the_file(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    import errno

    root = tmp_path / "mosei"
    make_sample("mosei", root, n=6, seed=3, progress=False)

    def refuse(path: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("hcm.pipeline.datasets.base.read_text", refuse)
    result = CliRunner().invoke(app, _extract_args(root, tmp_path / "cache"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Permission denied ({root / 'label.csv'})" in result.output
    assert not (tmp_path / "cache").exists()


def test_extract_with_a_split_file(workdir: Path, tmp_path: Path) -> None:
    root = make_sample("mosei", workdir / "data" / "sample-mosei", n=6, seed=3, progress=False).root
    ids = (root / "label.csv").read_text().splitlines()[1:3]
    chosen = [f"{row.split(',')[0]}$_${row.split(',')[1]}" for row in ids]
    split_file = tmp_path / "split.csv"
    split_file.write_text(f"id,split\n{chosen[0]},test\n{chosen[1]},train\n")
    result = CliRunner().invoke(app, ["extract", "--dataset", "sample", "--frames", "2", "--segments", "2",
                                      "--workers", "0", "--split-file", str(split_file), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 extracted" in result.output and "4 dataset items not in it left out" in result.output
    with FeatureCache(workdir / "features" / "sample" / "tiny") as cache:
        assert {cache[i].id: cache[i].split for i in range(len(cache))} == {chosen[0]: "test", chosen[1]: "train"}


def test_extract_uses_the_sample_when_the_dataset_root_is_absent(workdir: Path, caplog) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["sample", "--dataset", "MELD", "--n", "8", "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["extract", "--dataset", "meld", "--profile", "tiny", "--frames", "2", "--segments",
                                 "2", "--workers", "0", "--limit", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"using the sample corpus {workdir / 'data' / 'sample-meld'}" in caplog.text + result.output
    with FeatureCache(workdir / "features" / "meld" / "tiny") as cache:
        assert len(cache) == 3
    assert re.search(r"s \(start-up \d+\.\d s, then \d+\.\d items/s; encoders", result.output), result.output
