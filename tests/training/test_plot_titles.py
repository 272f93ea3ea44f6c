"""Every plot names its run, split and metric; confusion matrices have colour bars and a normalised twin;
the curves mark the best epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from hcm.training.evaluate import plot_confusion
from hcm.training.runs import best_epoch_of, plot_curves

matplotlib.use("Agg")


HISTORY = [{"epoch": 1, "train_loss": 3.0, "valid_loss": 2.0, "valid_mae": 0.9, "best": True},
           {"epoch": 2, "train_loss": 2.0, "valid_loss": 1.5, "valid_mae": 0.7, "best": True},
           {"epoch": 3, "train_loss": 1.0, "valid_loss": 1.8, "valid_mae": 0.8, "best": False}]


def test_best_epoch_is_the_last_marked_one() -> None:
    assert best_epoch_of(HISTORY) == 2
    assert best_epoch_of([{**row, "best": float(row["best"])} for row in HISTORY]) == 2  # read back from CSV
    assert best_epoch_of([{**row, "best": False} for row in HISTORY]) is None


def test_curves_name_the_run_split_and_metric_and_mark_the_best_epoch(drawn: list, tmp_path: Path) -> None:
    plot_curves({"20260101-full": HISTORY, "20260102-no-cdc": HISTORY[:2]}, "mae", tmp_path / "c.png")
    (fig,) = drawn
    left, right = fig.axes
    assert right.get_title() == "20260101-full, 20260102-no-cdc: valid mae per epoch (star: best epoch)"
    assert "train/valid loss" in left.get_title()
    assert [t.get_text() for t in right.get_legend().get_texts()].count("best epoch 2") == 2
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_confusion_has_counts_and_normalised_matrices_with_colour_bars(drawn: list, tmp_path: Path) -> None:
    truth, predicted = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    plot_confusion(tmp_path / "m.png", truth, predicted, ["neg", "neu", "pos"], where="run-a test")
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["run-a test: accuracy 66.7%\nconfusion matrix, counts",
                      "run-a test: accuracy 66.7%\nconfusion matrix, normalised over each true class"]
    assert len(fig.axes) == 4  # two matrices, two colour bars
    normalised = fig.axes[1].images[0].get_array()
    np.testing.assert_allclose(np.asarray(normalised).sum(1), 1.0)
