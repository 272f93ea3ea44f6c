"""The results table across runs: rows read from run folders, and a CSV that accumulates."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

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
