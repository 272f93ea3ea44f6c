"""The plots beside metrics.json: regression scatter and Acc-7 confusion, classification confusion
with per-class F1; all PNG files listed among what the evaluation wrote."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hcm_tiny_model import tiny_facts

from hcm.training.evaluate import score_classes, write_outputs
from hcm.training.inference import Predictions
from hcm.training.settings import DatasetFacts

PNG = b"\x89PNG\r\n\x1a\n"


def facts(task: str, metrics: str = "") -> DatasetFacts:
    """The tiny dataset's facts; ``metrics="sims"``: CH-SIMS's metric set and label range."""
    base = tiny_facts(task)
    return dataclasses.replace(base, metrics=metrics, label_range=(-1.0, 1.0)) if metrics else base


@pytest.mark.parametrize("task,metrics,plots", [
    ("regression", "", ["scatter.png", "confusion_acc7.png"]),
    ("regression", "sims", ["scatter.png", "confusion_acc5.png"]),
    ("classification", "", ["confusion.png"]),
])
def test_plots_are_written_as_png_and_listed(tmp_path: Path, task: str, metrics: str, plots: list[str]) -> None:
    rng = np.random.default_rng(0)
    n = 30
    if task == "regression":
        labels = rng.uniform(-1, 1, n) * (1 if metrics else 3)
        scores = labels + rng.normal(0, 0.3, n)
    else:
        labels = rng.integers(0, 3, n)
        scores = rng.normal(size=(n, 3))
    report: dict = {}
    failed = write_outputs(tmp_path, report, [f"id{i}" for i in range(n)], Predictions(np.arange(n), scores, 0.0),
                           labels, facts(task, metrics), tsne=False)
    assert failed == []
    for name in plots:
        assert (tmp_path / name).read_bytes()[:8] == PNG
        assert str(tmp_path / name) in report["files"]


def test_acc7_classes_match_the_metric() -> None:
    truth = np.array([-3.4, -0.5, 0.5, 1.5, 2.6])
    classes, _, names, title = score_classes(truth, truth, "")
    assert title == "Acc-7" and [names[k] for k in classes] == ["-3", "0", "0", "2", "3"]
