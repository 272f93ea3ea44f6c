"""hcm's metrics under MMSA's key names equal an independent implementation of MMSA's
definitions (tests/helpers/mmsa_reference.py), to 4 decimals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mmsa_reference import reference_mosei, reference_sims, weighted_f1

from hcm.training import metrics as M


def _cases(top: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores spread over and beyond the range, truths on the label grid (zeros included), and
    the values where the definitions differ: class boundaries in float32, halves for rounding."""
    rng = np.random.default_rng(seed)
    truth = np.round(rng.uniform(-top, top, n) / (top / 5)) * (top / 5)
    pred = truth + rng.normal(0, top / 3, n)
    edges = [-0.7, -0.1, 0.0, 0.1, 0.7, 1.0, -1.0, 1.2, -1.3, 0.5, -0.5, 1.5, 2.5, -2.5, 3.4]
    pred[: len(edges)] = np.float32(edges) * (top if top > 1 else 1)
    truth[-4:] = [0.0, 0.1, -0.1, 0.7]
    return pred.astype(np.float32), truth.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mosi_mosei_metrics_equal_mmsa_definitions(seed: int) -> None:
    pred, truth = _cases(3.0, 60, seed)
    ours = M.mmsa_metrics(M.compute_metrics("regression", pred, truth), "")
    assert ours == reference_mosei(pred, truth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sims_metrics_equal_mmsa_definitions(seed: int) -> None:
    pred, truth = _cases(1.0, 60, seed)
    values = M.compute_metrics("regression", pred, truth, metric_set="sims")
    assert set(values) == {"mult_acc_2", "mult_acc_3", "mult_acc_5", "f1_score", "mae", "corr"}
    assert M.mmsa_metrics(values, "sims") == reference_sims(pred, truth)


def test_sims_boundaries_are_half_open_in_float32() -> None:
    # float32(0.1) is a hair above 0.1 in float64, but MMSA compares in float32: class (-0.1, 0.1]
    values = np.array([-1.0, -0.7, -0.69, -0.1, np.float32(0.1), 0.11, 0.7, 0.71, 1.0], dtype=np.float32)
    assert M.sims_classes(values, 5).tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4]
    assert M.sims_classes(values, 3).tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2]
    assert M.sims_classes(values, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert M.sims_classes(np.array([0.0], np.float32), 2).tolist() == [0]  # 0 is negative: (-1.01, 0]


def test_sims_mae_and_corr_use_clipped_values() -> None:
    out = M.sims_metrics([3.0, -3.0], [1.0, -1.0])
    assert out["mae"] == 0.0 and out["corr"] == pytest.approx(1.0)
    assert M.regression_metrics([3.0, -3.0], [1.0, -1.0])["mae"] == 2.0  # MOSI/MOSEI: unclipped


def test_sims_baseline_is_train_mean_and_majority_classes() -> None:
    train = np.array([0.2, 0.4, 0.6, -0.8, 0.2])  # mean 0.12; majority: positive, (0.1, 0.7], (0.1, 0.7]
    truth = np.array([0.2, -0.4, 0.8, 0.0])
    base = M.baseline_metrics("regression", train, truth, metric_set="sims")
    assert base["mae"] == pytest.approx(np.mean(np.abs(truth - 0.12)), abs=1e-6)
    assert math.isnan(base["corr"])
    assert base["mult_acc_2"] == pytest.approx(2 / 4)  # 0.2 and 0.8 are positive
    assert base["mult_acc_3"] == pytest.approx(2 / 4)  # 0.2, 0.8 in (0.1, 1.01]
    assert base["mult_acc_5"] == pytest.approx(1 / 4)  # only 0.2 in (0.1, 0.7]
    assert base["f1_score"] == pytest.approx(weighted_f1([1, 0, 1, 0], [1, 1, 1, 1]))


def test_unknown_metric_set_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric set 'simz'"):
        M.compute_metrics("regression", [0.1], [0.2], metric_set="simz")


def test_mmsa_names_are_empty_for_classification() -> None:
    values = M.compute_metrics("classification", np.eye(3), np.arange(3), ["a", "b", "c"])
    assert M.mmsa_metrics(values, "") == {}
