"""The results table across runs: rows read from run folders, and a CSV that accumulates."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from hcm.training.results import collect_rows, read_results, update_results


def make_run(root: Path, name: str, dataset: str, seed: int, metrics: dict | None = None,
             mmsa: dict | None = None) -> Path:
    """A run folder as `hcm train` leaves it (config.json, metrics.csv), evaluated when ``metrics``."""
    run = root / dataset / name
    run.mkdir(parents=True)
    key = "mae" if dataset == "mosei" else "weighted_f1"
    config = {"dataset": dataset, "profile": "tiny", "key_metric": key, "created": "2026-01-01T00:00:00",
              "model": {"variant": "full", "modalities": "tva"}, "train": {"seed": seed}}
    (run / "config.json").write_text(json.dumps(config))
    with open(run / "metrics.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["epoch", "train_loss", f"valid_{key}", "best"])
        writer.writerows([[1, 0.9, 0.8, True], [2, 0.7, 0.6, True], [3, 0.6, 0.7, False]])
    if metrics is not None:
        (run / "eval" / "test").mkdir(parents=True)
        (run / "eval" / "test" / "metrics.json").write_text(json.dumps({"metrics": metrics, "mmsa": mmsa or {}}))
    return run


def test_rows_hold_settings_best_epoch_and_test_metrics(tmp_path: Path) -> None:
    make_run(tmp_path, "a-full", "mosei", 1, {"mae": 0.61, "acc2_non0": 0.8}, {"MAE": 0.61, "Non0_acc_2": 0.8})
    make_run(tmp_path, "b-full", "meld", 2)
    rows = {row["dataset"]: row for row in collect_rows(tmp_path)}
    mosei, meld = rows["mosei"], rows["meld"]
    assert (mosei["variant"], mosei["seed"], mosei["best_epoch"], mosei["epochs"]) == ("full", 1, 2, 3)
    assert mosei["valid_mae"] == 0.6 and mosei["test_mae"] == 0.61 and mosei["Non0_acc_2"] == 0.8
    assert mosei["evaluated"] == "test"
    assert meld["evaluated"] == "" and "test_weighted_f1" not in meld and meld["valid_weighted_f1"] == 0.6
    assert [row["dataset"] for row in collect_rows(tmp_path, "meld")] == ["meld"]


def test_csv_accumulates_and_replaces_a_runs_own_row(tmp_path: Path) -> None:
    first = make_run(tmp_path, "a-full", "mosei", 1)
    out = tmp_path / "results.csv"
    update_results(out, collect_rows(tmp_path))
    make_run(tmp_path, "b-full", "mosei", 2, {"mae": 0.5}, {"MAE": 0.5})
    (first / "eval" / "test").mkdir(parents=True)
    (first / "eval" / "test" / "metrics.json").write_text(json.dumps({"metrics": {"mae": 0.7}, "mmsa": {"MAE": 0.7}}))
    update_results(out, collect_rows(tmp_path, "mosei"))
    shutil.rmtree(first.parent / "b-full")  # a deleted run keeps its row
    update_results(out, collect_rows(tmp_path))
    rows = read_results(out)
    found = [(Path(r["run"]).name, r["seed"], r["MAE"]) for r in rows]
    assert found == [("a-full", "1", "0.7"), ("b-full", "2", "0.5")]


def test_an_unreadable_run_is_skipped(tmp_path: Path) -> None:
    make_run(tmp_path, "a-full", "mosei", 1)
    broken = make_run(tmp_path, "b-full", "mosei", 2)
    (broken / "config.json").write_text("{not json")
    assert [Path(r["run"]).name for r in collect_rows(tmp_path)] == ["a-full"]


def test_ablation_runs_and_seed_groups_are_listed(tmp_path: Path) -> None:
    """`hcm runs` lists the runs an ablation trained and one mean ± std row per seed group."""
    from hcm.training.results import seed_groups

    a = make_run(tmp_path, "t-full-s0", "mosei", 0, {"mae": 0.6, "acc7": 0.40})
    b = make_run(tmp_path, "t-full-s1", "mosei", 1, {"mae": 0.8, "acc7": 0.50})
    (tmp_path / "mosei" / "t-full-seeds").mkdir()
    (tmp_path / "mosei" / "t-full-seeds" / "summary.json").write_text(json.dumps({"runs": [str(a), str(b)]}))
    for seed, mae in ((0, 0.7), (1, 0.9), (2, 1.1)):
        make_run(tmp_path / "mosei", f"no-acl-s{seed}", "u-ablation", seed, {"mae": mae})
    rows = collect_rows(tmp_path, "mosei")
    assert [Path(r["run"]).name for r in rows][:2] == ["t-full-s0", "t-full-s1"] and len(rows) == 5
    groups = {Path(g["run"]).name: g for g in seed_groups(tmp_path, rows, "mosei")}
    assert set(groups) == {"t-full-seeds", "no-acl"}
    assert groups["t-full-seeds"]["test_mae"] == {"mean": 0.7, "std": pytest.approx(0.141421, abs=1e-6), "n": 2}
    assert groups["t-full-seeds"]["seed"] == "0,1" and groups["t-full-seeds"]["evaluated"] == "2 of 2"
    assert groups["no-acl"]["test_mae"]["mean"] == pytest.approx(0.9) and groups["no-acl"]["seed"] == "0,1,2"


def test_a_leftover_folder_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_run(tmp_path, "a-full", "mosei", 1)
    (tmp_path / "mosei" / "b-full" / "checkpoints").mkdir(parents=True)  # a run folder deleted mid-training
    (tmp_path / "mosei" / "c-full-seeds").mkdir()
    (tmp_path / "mosei" / "c-full-seeds" / "summary.json").write_text("{}")
    assert [Path(r["run"]).name for r in collect_rows(tmp_path)] == ["a-full"]
    assert "left out " in caplog.text and "b-full" in caplog.text and "c-full-seeds" not in caplog.text
