"""Metrics against values worked out by hand (ties, truth exactly 0, .5 rounding boundaries)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hcm.training import metrics

# Hand-worked regression case. Rounding uses numpy's half-to-even: 0.5 -> 0, -0.5 -> -0,
# 1.5 -> 2, 2.5 -> 2 (round-half-up would give 1, 0, 2, 3 and change Acc-7).
PRED = [0.5, -0.5, 1.5, 2.5, -3.7, 0.0, 0.2, -1.2]
TRUTH = [0.0, 0.0, 2.0, 3.0, -3.0, -0.4, 1.0, -1.6]


def test_regression_metrics_by_hand() -> None:
    out = metrics.regression_metrics(PRED, TRUTH)
    # |errors| = .5 .5 .5 .5 .7 .4 .8 .4 -> 4.3 / 8
    assert out["mae"] == pytest.approx(0.5375)
    # rounded pred 0 -0 2 2 -3 0 0 -1 vs truth 0 0 2 3 -3 -0 1 -2: equal at 0,1,2,4,5
    assert out["acc7"] == pytest.approx(5 / 8)
    # clipped to [-2, 2]: pred 0 0 2 2 -2 0 0 -1 vs truth 0 0 2 2 -2 0 1 -2
    assert out["acc5"] == pytest.approx(6 / 8)
    # has0: pred>=0 TFTTFTTF vs truth>=0 TTTTFFTF -> 6/8; F1(T)=0.8 (5 items), F1(F)=2/3 (3 items)
    assert out["acc2_has0"] == pytest.approx(0.75)
    assert out["f1_has0"] == pytest.approx((5 * 0.8 + 3 * 2 / 3) / 8)
    # non0 drops the two zero truths; pred 0.0 at index 5 counts negative here (> 0), all match
    assert out["acc2_non0"] == pytest.approx(1.0)
    assert out["f1_non0"] == pytest.approx(1.0)


def test_round_half_to_even_is_what_acc7_uses() -> None:
    assert metrics.regression_metrics([2.5], [3.0])["acc7"] == 0.0
    assert metrics.regression_metrics([3.5], [3.0])["acc7"] == 1.0  # clipped to 3 first
    assert metrics.regression_metrics([-2.5], [-2.0])["acc7"] == 1.0


def test_pearson_by_hand_and_undefined_cases() -> None:
    # dev pred -1 0 1, dev truth -4/3 -1/3 5/3: r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    out = metrics.regression_metrics([1, 2, 3], [1, 2, 4])
    assert out["corr"] == pytest.approx(9 / math.sqrt(84))
    assert math.isnan(metrics.regression_metrics([1, 1, 1], [1, 2, 4])["corr"])


def test_non0_all_zero_truth_is_nan() -> None:
    out = metrics.regression_metrics([0.3, -0.2], [0.0, 0.0])
    assert math.isnan(out["acc2_non0"]) and out["acc2_has0"] == 0.5


def test_classification_metrics_by_hand() -> None:
    names = ["neutral", "joy", "anger"]
    truth = [0, 0, 1, 1, 2, 2, 0]
    pred = [0, 1, 1, 1, 0, 2, 0]
    out = metrics.classification_metrics(pred, truth, names)
    assert out["accuracy"] == pytest.approx(5 / 7)
    assert out["f1_neutral"] == pytest.approx(2 / 3)  # P = R = 2/3
    assert out["f1_joy"] == pytest.approx(0.8)  # P = 2/3, R = 1
    assert out["f1_anger"] == pytest.approx(2 / 3)  # P = 1, R = 1/2
    assert out["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.8 + 2 * 2 / 3) / 7)


def test_classification_from_logits_ties_take_first_class() -> None:
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])  # ties: argmax picks the first
    out = metrics.compute_metrics("classification", logits, np.array([0, 1]), ["a", "b", "c"])
    assert out["accuracy"] == 1.0
    assert out["f1_c"] == 0.0  # never predicted, never true: zero_division=0


def test_regression_baseline_by_hand() -> None:
    train = np.array([1.0, 1.2, -1.0, 0.4])  # mean 0.4; rounded 1 1 -1 0 -> majority 1; 3/4 >= 0
    out = metrics.baseline_metrics("regression", train, np.array(TRUTH))
    assert out["mae"] == pytest.approx(11.8 / 8)
    assert math.isnan(out["corr"])
    assert out["acc7"] == pytest.approx(1 / 8)  # only truth 1.0 rounds to 1
    assert out["acc2_has0"] == pytest.approx(5 / 8)  # predicts positive everywhere
    assert out["acc2_non0"] == pytest.approx(3 / 6)  # truths 2.0, 3.0, 1.0 of the six non-zero


def test_classification_baseline_is_majority_class() -> None:
    out = metrics.baseline_metrics("classification", np.array([2, 2, 1]), np.array([2, 0, 2, 1]), ["a", "b", "c"])
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["weighted_f1"] == pytest.approx(2 / 4 * (2 / 3))  # class c: P = 1/2, R = 1


def test_is_better_and_seed_summary() -> None:
    assert metrics.is_better(0.4, 0.5, higher_is_better=False)
    assert not metrics.is_better(float("nan"), 0.5, higher_is_better=True)
    assert metrics.is_better(0.1, None, higher_is_better=True)
    summary = metrics.summarize_seeds([{"mae": 1.0}, {"mae": 3.0}])
    assert summary["mae"]["mean"] == 2.0 and summary["mae"]["std"] == pytest.approx(math.sqrt(2))


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="same non-empty length"):
        metrics.regression_metrics([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.regression_metrics([float("nan")], [1.0])
    with pytest.raises(ValueError, match="unknown task"):
        metrics.compute_metrics("ranking", np.zeros(2), np.zeros(2))
