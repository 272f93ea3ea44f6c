"""Finding a workspace's latest run, and what a user is told when there is none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hcm.training.runs import find_latest_run


def _run(root: Path, dataset: str, name: str, mtime: float) -> Path:
    run = root / dataset / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    os.utime(run / "config.json", (mtime, mtime))
    return run


def test_the_latest_run_is_the_newest_config_of_the_dataset(tmp_path: Path) -> None:
    _run(tmp_path, "meld", "a", 1000)
    newest_mosei = _run(tmp_path, "mosei", "b", 2000)
    newest = _run(tmp_path, "meld", "c", 3000)
    assert find_latest_run(tmp_path) == newest
    assert find_latest_run(tmp_path, "mosei") == newest_mosei


def test_no_run_of_a_dataset_names_the_datasets_that_have_runs(tmp_path: Path) -> None:
    _run(tmp_path, "sample", "a", 1000)
    _run(tmp_path, "meld", "b", 2000)
    with pytest.raises(FileNotFoundError, match=r"zzz; runs exist for meld, sample$"):
        find_latest_run(tmp_path, "zzz")


def test_no_run_at_all_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train one with `hcm train`"):
        find_latest_run(tmp_path)
