"""Edges of hcm.training.metrics that mutation testing (``make mutate``) found unchecked: the
higher-is-better comparison, one seed, inputs of another shape, SIMS baselines from labels outside
[-1, 1]. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hcm.training import metrics


@pytest.mark.parametrize("value, best, higher, expected", [
    (0.8, 0.7, True, True), (0.6, 0.7, True, False), (0.7, 0.7, True, False),  # accuracy-like
    (0.6, 0.7, False, True), (0.8, 0.7, False, False), (0.7, 0.7, False, False),  # MAE-like
    (None, 0.7, True, False), (math.nan, 0.7, False, False),  # no value never improves
    (0.1, None, True, True), (0.1, math.nan, False, True),  # anything beats no best yet
])
def test_is_better(value, best, higher: bool, expected: bool) -> None:
    assert metrics.is_better(value, best, higher) is expected


def test_one_seed_has_std_zero_and_text_entries_are_left_out() -> None:
    assert metrics.summarize_seeds([{"mae": 0.5, "split": "test"}]) == {"mae": {"mean": 0.5, "std": 0.0, "n": 1}}


def test_seeds_summary_by_hand() -> None:
    summary = metrics.summarize_seeds([{"mae": 1.0, "acc": 0.5}, {"mae": 3.0, "acc": 0.7}, {"mae": 2.0, "acc": 0.6}])
    # mae: mean 2, sample std sqrt(((1-2)^2 + (3-2)^2 + 0) / 2) = 1; acc: mean 0.6, std 0.1
    assert summary["mae"] == {"mean": 2.0, "std": 1.0, "n": 3}
    assert summary["acc"]["mean"] == pytest.approx(0.6) and summary["acc"]["std"] == pytest.approx(0.1)


def test_classification_metrics_take_column_vectors() -> None:
    flat = metrics.classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], ["a", "b", "c"])
    column = metrics.classification_metrics(np.array([[0], [1], [2], [2]]), np.array([[0], [1], [1], [2]]),
                                            ["a", "b", "c"])
    assert column == flat and flat["accuracy"] == 0.75  # 3 of 4 equal
    # per class F1: a 1; b precision 1, recall 1/2 -> 2/3; c precision 1/2, recall 1 -> 2/3
    assert flat["f1_a"] == 1.0 and flat["f1_b"] == pytest.approx(2 / 3) and flat["f1_c"] == pytest.approx(2 / 3)
    # weighted by support 1, 2, 1: (1 + 2 * 2/3 + 2/3) / 4 = 3/4
    assert flat["weighted_f1"] == pytest.approx(0.75)


def test_sims_baseline_fits_the_clipped_train_labels() -> None:
    # train labels clipped to [-1, 1]: -1, 0.4, 0.6 -> mean 0 (unclipped it would be -2/3)
    out = metrics.baseline_metrics("regression", np.array([-3.0, 0.4, 0.6]), np.array([0.2, -0.2]), metric_set="sims")
    assert out["mae"] == pytest.approx(0.2)
    # majority of the train classes: 2 classes -> positive (0.4, 0.6); truth classes: positive, negative
    assert out["mult_acc_2"] == 0.5


def test_sims_baseline_clips_positive_train_labels_too() -> None:
    # clipped: 1, -0.4, -0.6 -> mean 0 (unclipped 2/3)
    out = metrics.baseline_metrics("regression", np.array([3.0, -0.4, -0.6]), np.array([0.2, -0.2]), metric_set="sims")
    assert out["mae"] == pytest.approx(0.2)


def test_classification_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match=r"predicted \(2,\) and truth \(1,\) must be the same non-empty length"):
        metrics.classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="must be the same non-empty length"):
        metrics.classification_metrics([], [], ["a", "b"])
    one = metrics.classification_metrics([1], [1], ["a", "b"])  # one item is enough
    assert one["accuracy"] == 1.0 and one["f1_b"] == 1.0 and one["f1_a"] == 0.0  # a: no item, F1 0 by convention
    square = metrics.classification_metrics(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 2]]), ["a", "b", "c"])
    assert square == metrics.classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], ["a", "b", "c"])


def test_baseline_needs_train_labels_and_one_is_enough() -> None:
    with pytest.raises(ValueError, match="^the train split is empty; baselines are fitted on train labels$"):
        metrics.baseline_metrics("regression", np.array([]), np.array([0.5]))
    assert metrics.baseline_metrics("regression", np.array([1.0]), np.array([1.0, 2.0]))["mae"] == pytest.approx(0.5)


@pytest.mark.parametrize("train, sign", [
    ([1.0, -1.0], 1),  # exactly half non-negative: positive
    ([0.0, 0.0, -1.0], 1),  # zero counts as non-negative (Has0)
    ([0.5, 0.5, -1.0], 1),
    ([-1.0, -2.0, 0.5], -1),  # a third non-negative: negative
])
def test_has0_baseline_predicts_the_train_majority_sign(train: list, sign: int) -> None:
    out = metrics.baseline_metrics("regression", np.array(train), np.array([0.5, -0.5, 0.0]))
    # Has0 truth classes (>= 0): True, False, True. Predicting True: accuracy 2/3; F1 of True
    # (precision 2/3, recall 1) 0.8, of False 0, weighted by support (2, 1): 1.6 / 3.
    # Predicting False: accuracy 1/3; F1 of False (precision 1/3, recall 1) 0.5, weighted: 0.5 / 3.
    expected = (2 / 3, 1.6 / 3) if sign > 0 else (1 / 3, 0.5 / 3)
    assert (out["acc2_has0"], out["f1_has0"]) == pytest.approx(expected)


@pytest.mark.parametrize("train, truth, metric, expected", [
    # Acc-7: train rounded after clipping to [-3, 3]: -3, -3, 0, 0 -> the tie goes to the smaller, -3
    # (unclipped -4, -3, 0, 0 would give 0); truth classes -3, -3, 0
    ([-3.6, -3.4, 0.1, -0.1], [-3.0, -2.8, 0.0], "acc7", 2 / 3),
    ([3.6, 3.6, 3.4, 0.1, -0.1], [3.0, 2.8, 0.0], "acc7", 2 / 3),  # 3, 3, 3, 0, 0 -> 3 (unclipped: 4, 4, 3, 0, 0)
    # Acc-5: clipped to [-2, 2]: -2, -2, 0, 0 -> -2 (clipped to [-3, 3]: -3, -2, 0, 0 -> 0)
    ([-2.6, -2.4, 0.1, -0.1], [-2.0, -1.8, 0.0], "acc5", 2 / 3),
    ([2.6, 2.6, 2.4, 0.1, -0.1], [2.0, 1.8, 0.0], "acc5", 2 / 3),
])
def test_acc7_and_acc5_baselines_take_the_majority_of_the_clipped_classes(train, truth, metric, expected) -> None:
    assert metrics.baseline_metrics("regression", np.array(train), np.array(truth))[metric] == pytest.approx(expected)


@pytest.mark.parametrize("train, sign", [
    ([1.0, -1.0], 1),  # exactly half of the non-zero labels positive: positive
    ([0.0, 0.0, 1.0], 1), ([1.0, 1.0, -1.0], 1), ([0.5, 0.5, -1.0], 1),
    ([0.0, 0.0], 1),  # no non-zero label: positive
    ([0.0, 0.0, -1.0], -1), ([-1.0, -2.0, 0.5], -1),  # zeros do not count (Non0)
])
def test_non0_baseline_predicts_the_majority_sign_of_the_non_zero_train_labels(train: list, sign: int) -> None:
    out = metrics.baseline_metrics("regression", np.array(train), np.array([0.5, 1.0, -0.5, 0.0]))
    # Non0 truth classes (the zero left out): True, True, False. Predicting True: accuracy 2/3,
    # weighted F1 (2 * 0.8 + 0) / 3; predicting False: accuracy 1/3, weighted F1 (0 + 0.5) / 3.
    expected = (2 / 3, 1.6 / 3) if sign > 0 else (1 / 3, 0.5 / 3)
    assert (out["acc2_non0"], out["f1_non0"]) == pytest.approx(expected)


def test_pearson_is_nan_only_where_undefined() -> None:
    assert metrics.pearson(np.array([0.0, 1.0, 0.5]), np.array([0.0, 1.0, 0.5])) == pytest.approx(1.0)  # ranges of 1
    assert math.isnan(metrics.pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])))
    assert math.isnan(metrics.pearson(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])))
    assert math.isnan(metrics.pearson(np.array([1.0]), np.array([2.0])))


@pytest.mark.parametrize("function", [metrics.regression_metrics, metrics.sims_metrics])
def test_regression_sets_name_the_bad_input(function) -> None:
    with pytest.raises(ValueError, match="^predictions holds non-finite values"):
        function([0.1, math.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="^truth holds non-finite values"):
        function([0.1, 0.2], [math.inf, 0.2])
    with pytest.raises(ValueError, match=r"predictions \(2,\) and truth \(1,\) must be the same non-empty length"):
        function([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="must be the same non-empty length"):
        function([], [])
    assert function([0.5], [0.25])["mae"] == pytest.approx(0.25)  # one item is enough


def test_regression_metrics_take_a_column_of_predictions() -> None:
    column = metrics.regression_metrics(np.array([[1.0], [2.0], [0.0]]), [1.0, 3.0, 0.0])
    assert column["mae"] == pytest.approx(1 / 3) and column["acc7"] == pytest.approx(2 / 3)


def test_mmsa_names_default_to_the_mosi_mosei_set_and_rounding() -> None:
    values = {"mae": 0.123456, "acc7": 0.5, "f1_has0": 0.77777}
    assert metrics.mmsa_metrics(values) == {"Has0_F1_score": 0.7778, "Mult_acc_7": 0.5, "MAE": 0.1235}
    assert metrics.mmsa_metrics(values, "unknown") == {}  # a set MMSA does not define


def test_float32_model_outputs_are_scored_in_float64() -> None:
    pred, truth = np.float32([0.1, 0.7, 1.3]), np.float32([0.3, 0.2, -2.9])
    # the float32 values, subtracted and averaged as Python (float64) numbers
    expected = sum(abs(float(p) - float(t)) for p, t in zip(pred, truth)) / 3
    assert metrics.regression_metrics(pred, truth)["mae"] == expected  # float32 arithmetic gives 1.6333332...
