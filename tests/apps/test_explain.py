"""`hcm explain` on cached items of a small trained run: the JSON's numbers are the model's own."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import hcm_tiny_cache
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hcm.apps.explain import RunModel
from hcm.apps.predict import items_batch
from hcm.cache import FeatureCache
from hcm.cli import app

runner = CliRunner()


def explain(small_runs, *args: str):
    return runner.invoke(app, ["--workdir", str(small_runs.workspace.root), "explain", "--run",
                               str(small_runs.full), "--device", "cpu", *args])


@pytest.mark.slow  # the shared fixture trains two runs
def test_explain_ids_writes_json_and_png_whose_plans_meet_their_marginals(small_runs, tmp_path: Path) -> None:
    result = explain(small_runs, "--ids", "clip041,clip044", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "clip041" in result.stdout and "Δ video" in result.stdout
    for item_id in ("clip041", "clip044"):
        assert (tmp_path / f"{item_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        doc = json.loads((tmp_path / f"{item_id}.json").read_text())
        assert set(doc["plans"]) == {"video", "audio"} and set(doc["graphs"]) == {"text", "video", "audio"}
        for plan in doc["plans"].values():
            matrix = np.array(plan["plan"])
            assert matrix.shape == (len(plan["rows"]), len(plan["cols"]))
            np.testing.assert_allclose(matrix.sum(1), plan["row_marginal"], atol=1e-4)
            np.testing.assert_allclose(matrix.sum(0), plan["col_marginal"], atol=1e-4)
            assert abs(sum(plan["row_marginal"]) - 1) < 1e-5 and plan["marginal_error"] < 1e-4
        video = doc["graphs"]["video"]
        kept = np.array(video["adjacency"]) > 0
        assert (np.array(video["similarity"])[kept] > video["eta"]).all()
        attention = np.array(doc["attention"]["audio"]["weights"])
        np.testing.assert_allclose(attention.sum(1), 1.0, atol=1e-5)  # each audio row's weights over text


@pytest.mark.slow  # the shared fixture trains two runs
def test_contributions_are_the_predictions_of_the_item_with_the_modality_absent(small_runs, tmp_path: Path) -> None:
    """Masked independently, through the cache's own masks (as extraction stores a missing medium)."""
    assert explain(small_runs, "--ids", "clip042", "--out", str(tmp_path)).exit_code == 0
    doc = json.loads((tmp_path / "clip042.json").read_text())
    run = RunModel.load(small_runs.full, "cpu")
    with FeatureCache(small_runs.cache, split="test") as cache:
        item = cache.get("clip042")
    full = float(run.forward(items_batch([item], run.config, run.meta))[0])
    assert doc["prediction"]["score"] == pytest.approx(full, abs=1e-6)
    assert doc["label"] == pytest.approx(float(item.label))
    for modality in ("text", "video", "audio"):
        with FeatureCache(small_runs.cache, split="test") as cache:
            absent = cache.get("clip042")
        hcm_tiny_cache.mask(absent, modality)
        without = float(run.forward(items_batch([absent], run.config, run.meta))[0])
        reported = doc["contributions"][modality]
        assert reported["prediction_without"] == pytest.approx(without, abs=1e-5)
        assert reported["difference"] == pytest.approx(full - without, abs=1e-5)
    assert any(abs(c["difference"]) > 1e-4 for c in doc["contributions"].values())


@pytest.mark.slow  # the shared fixture trains two runs
def test_worst_picks_the_largest_errors_of_the_evaluation(small_runs, tmp_path: Path) -> None:
    # the run's own test predictions (another test may have evaluated the shared run on another cache)
    own = runner.invoke(app, ["--workdir", str(small_runs.workspace.root), "evaluate", "--run", str(small_runs.full),
                              "--device", "cpu"])
    assert own.exit_code == 0, own.output
    with open(small_runs.full / "eval" / "test" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.sort(key=lambda r: -abs(float(r["prediction"]) - float(r["label"])))
    result = explain(small_runs, "--worst", "2", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(r["id"] for r in rows[:2])


@pytest.mark.slow  # the shared fixture trains two runs
def test_an_unknown_id_is_a_clear_error(small_runs, tmp_path: Path) -> None:
    result = explain(small_runs, "--ids", "nope", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "no item 'nope' in the test split" in result.output and "clip0" in result.output


@pytest.mark.slow  # the shared fixture trains two runs
def test_text_without_a_clip_is_refused(small_runs) -> None:
    result = explain(small_runs, "--ids", "clip041", "--text", "hello")
    assert result.exit_code == 2 and "--text goes with a clip" in result.output


def test_the_picture_shows_mosei_ids_and_dollar_words_as_written(tmp_path: Path) -> None:
    """``$`` in an id (``video$_$3``) or a transcript is text, not mathtext, in the picture."""
    from hcm.apps.explain_plot import plot_explanation

    plan = {"plan": [[0.5, 0.0], [0.0, 0.5]], "rows": ["f0", "f1"], "cols": ["$5", "off"],
            "row_marginal": [0.5, 0.5], "col_marginal": [0.5, 0.5]}
    doc = {"id": "abc$_$3", "split": "test", "text": "$5 off", "run": "runs/x", "epoch": 1,
           "modalities": {"text": True, "video": True, "audio": False}, "prediction": {"score": 0.5}, "label": 1.0,
           "contributions": {"text": {"difference": 0.2}, "video": {"difference": -0.1}},
           "plans": {"video": plan}, "attention": {},
           "graphs": {"text": {"adjacency": [[0, 1], [1, 0]], "labels": ["$5", "off"]}}}
    plot_explanation(doc, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_a_class_contribution_is_the_change_in_the_predicted_class_probability() -> None:
    from hcm.apps.explain import contribution, readout

    classes = ["neg", "neu", "pos"]
    full = readout(torch.tensor([0.0, 0.0, 2.0]), classes)
    masked = readout(torch.tensor([1.0, 0.0, 0.0]), classes)
    assert full["class"] == "pos" and masked["class"] == "neg"
    change = contribution(full, masked)
    assert change["prediction_without"] == "neg"
    assert change["difference"] == pytest.approx(full["probabilities"]["pos"] - masked["probabilities"]["pos"])
    assert contribution(readout(torch.tensor([0.5]), None), readout(torch.tensor([-0.25]), None)) == {
        "prediction_without": -0.25, "difference": 0.75}
