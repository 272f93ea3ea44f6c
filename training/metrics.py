"""Evaluation metrics as the field reports them, plus the trivial baselines beside them.

Regression (CMU-MOSEI and the ``sample`` dataset), following the MMSA conventions:

- ``mae``: mean absolute error on unclipped values; ``corr``: Pearson correlation
  (``scipy.stats.pearsonr``; NaN when either side is constant, e.g. a constant baseline).
- ``acc7`` / ``acc5``: clip prediction and truth to [-3, 3] / [-2, 2], round both with
  ``np.round`` and count equal pairs. ``np.round`` rounds halves to the even integer
  (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0), which is what the field's code does too.
- ``acc2_has0`` / ``f1_has0``: positive = value >= 0, over all items.
- ``acc2_non0`` / ``f1_non0``: items whose truth is exactly 0 dropped, positive = value > 0.
  F1 is sklearn's ``average='weighted'``.

Classification (MELD, IEMOCAP): ``accuracy``, ``weighted_f1`` and ``f1_<class name>`` per class.

CH-SIMS (metric set ``sims``), as MMSA computes it: see :func:`sims_metrics`. For the regression
sets, :func:`mmsa_metrics` gives the same values under MMSA's key names, rounded to 4 decimals
as MMSA reports them.

All values are fractions in [0, 1] (MAE and Corr excepted); tables show them as percentages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from hcm.core.names import CLASSIFICATION, REGRESSION

#: The metric that picks the best epoch on the validation split, and whether higher is better.
DEFAULT_KEY_METRIC = {REGRESSION: ("mae", False), CLASSIFICATION: ("weighted_f1", True)}


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds non-finite values; metrics need finite numbers")
    return array


def pearson(predictions: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation, NaN where it is undefined (fewer than 2 items or a constant side)."""
    if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(truth) == 0:
        return math.nan
    return float(stats.pearsonr(predictions, truth).statistic)


def _binary(pred_pos: np.ndarray, true_pos: np.ndarray) -> tuple[float, float]:
    """Accuracy and weighted F1 of two boolean vectors (NaN for an empty selection)."""
    if true_pos.size == 0:
        return math.nan, math.nan
    accuracy = float(accuracy_score(true_pos, pred_pos))
    f1 = float(f1_score(true_pos, pred_pos, average="weighted", zero_division=0))
    return accuracy, f1


def regression_metrics(predictions: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    """MAE, Corr, Acc-7, Acc-5 and Acc-2/F1 in the has0 and non0 variants (see module doc)."""
    pred = _as_1d(predictions, "predictions")
    true = _as_1d(truth, "truth")
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"predictions {pred.shape} and truth {true.shape} must be the same non-empty length")
    out = {"mae": float(np.mean(np.abs(pred - true))), "corr": pearson(pred, true)}
    for name, bound in (("acc7", 3.0), ("acc5", 2.0)):
        rounded_pred = np.round(np.clip(pred, -bound, bound))
        rounded_true = np.round(np.clip(true, -bound, bound))
        out[name] = float(np.mean(rounded_pred == rounded_true))
    out["acc2_has0"], out["f1_has0"] = _binary(pred >= 0, true >= 0)
    non_zero = true != 0
    out["acc2_non0"], out["f1_non0"] = _binary(pred[non_zero] > 0, true[non_zero] > 0)
    return out


def classification_metrics(
    predicted: Sequence[int], truth: Sequence[int], class_names: Sequence[str]
) -> dict[str, float]:
    """Accuracy, weighted F1 and per-class F1 (``f1_<name>``) from class indices."""
    pred = np.asarray(predicted, dtype=np.int64).reshape(-1)
    true = np.asarray(truth, dtype=np.int64).reshape(-1)
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"predicted {pred.shape} and truth {true.shape} must be the same non-empty length")
    labels = list(range(len(class_names)))
    out = {
        "accuracy": float(accuracy_score(true, pred)),
        "weighted_f1": float(f1_score(true, pred, labels=labels, average="weighted", zero_division=0)),
    }
    per_class = f1_score(true, pred, labels=labels, average=None, zero_division=0)
    for name, value in zip(class_names, per_class):
        out[f"f1_{name}"] = float(value)
    return out


def compute_metrics(
    task: str, predictions: np.ndarray, truth: np.ndarray, class_names: Sequence[str] = (), metric_set: str = ""
) -> dict[str, float]:
    """Metrics of one split: ``predictions`` are scores (regression) or logits/probabilities (B, C).

    ``metric_set`` ``"sims"`` gives MMSA's CH-SIMS set (:func:`sims_metrics`); ``""`` chooses by task.
    """
    if metric_set == SIMS:
        return sims_metrics(np.asarray(predictions).reshape(-1), truth)
    if metric_set:
        raise ValueError(f"unknown metric set {metric_set!r}; known: '' (by task), {SIMS!r}")
    if task == REGRESSION:
        return regression_metrics(np.asarray(predictions).reshape(-1), truth)
    if task == CLASSIFICATION:
        scores = np.asarray(predictions)
        predicted = scores.argmax(axis=-1) if scores.ndim == 2 else scores
        return classification_metrics(predicted, truth, class_names)
    raise ValueError(f"unknown task {task!r}; expected {REGRESSION!r} or {CLASSIFICATION!r}")


def _mode(values: np.ndarray) -> float:
    uniques, counts = np.unique(values, return_counts=True)
    return float(uniques[np.argmax(counts)])


def _regression_baseline(train_labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Train-mean prediction for MAE/Corr; majority class (in train) for every accuracy/F1."""
    n = truth.size
    out = {}
    mean_metrics = regression_metrics(np.full(n, train_labels.mean()), truth)
    out["mae"], out["corr"] = mean_metrics["mae"], mean_metrics["corr"]
    for name, bound in (("acc7", 3.0), ("acc5", 2.0)):
        majority = _mode(np.round(np.clip(train_labels, -bound, bound)))
        out[name] = regression_metrics(np.full(n, majority), truth)[name]
    has0_sign = 1.0 if np.mean(train_labels >= 0) >= 0.5 else -1.0
    has0 = regression_metrics(np.full(n, has0_sign), truth)
    out["acc2_has0"], out["f1_has0"] = has0["acc2_has0"], has0["f1_has0"]
    non_zero = train_labels[train_labels != 0]
    non0_sign = 1.0 if non_zero.size == 0 or np.mean(non_zero > 0) >= 0.5 else -1.0
    non0 = regression_metrics(np.full(n, non0_sign), truth)
    out["acc2_non0"], out["f1_non0"] = non0["acc2_non0"], non0["f1_non0"]
    return out


def baseline_metrics(
    task: str, train_labels: np.ndarray, truth: np.ndarray, class_names: Sequence[str] = (), metric_set: str = ""
) -> dict[str, float]:
    """The trivial baselines on a split, fitted on the train labels only.

    Regression: the train mean for MAE and Corr (Corr is NaN: a constant has no correlation),
    the train's majority class for Acc-7, Acc-5 and both Acc-2/F1 variants.
    Classification: the train's majority class for every metric.
    """
    train = np.asarray(train_labels)
    true = np.asarray(truth)
    if train.size == 0:
        raise ValueError("the train split is empty; baselines are fitted on train labels")
    if metric_set == SIMS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _sims_baseline(train.astype(np.float64), true.astype(np.float64))
    if task == REGRESSION:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _regression_baseline(train.astype(np.float64), true.astype(np.float64))
    majority = int(_mode(train.astype(np.int64)))
    return compute_metrics(task, np.full(true.size, majority), true, class_names)


def is_better(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether ``value`` improves on ``best`` (a NaN value never does)."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if higher_is_better else value < best


def summarize_seeds(per_seed: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample std (ddof=1; 0 for one seed) of every metric over several seeds."""
    names = [name for name in per_seed[0] if isinstance(per_seed[0][name], (int, float))]
    summary = {}
    for name in names:
        values = np.array([run[name] for run in per_seed], dtype=np.float64)
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        summary[name] = {"mean": float(np.mean(values)), "std": std, "n": int(values.size)}
    return summary


# --------------------------------------------------------------------------- MMSA's CH-SIMS set and key names

SIMS = "sims"
METRIC_SETS = ("", SIMS)  # "" chooses by task
#: Class boundaries of MMSA's CH-SIMS accuracies; class k is the half-open interval (b[k], b[k + 1]].
SIMS_BOUNDARIES = {2: (-1.01, 0.0, 1.01), 3: (-1.01, -0.1, 0.1, 1.01), 5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01)}
#: MMSA's key -> hcm's metric name, per metric set ("" is the MOSI/MOSEI regression set).
MMSA_NAMES = {
    "": {"Has0_acc_2": "acc2_has0", "Has0_F1_score": "f1_has0", "Non0_acc_2": "acc2_non0",
         "Non0_F1_score": "f1_non0", "Mult_acc_5": "acc5", "Mult_acc_7": "acc7", "MAE": "mae", "Corr": "corr"},
    SIMS: {"Mult_acc_2": "mult_acc_2", "Mult_acc_3": "mult_acc_3", "Mult_acc_5": "mult_acc_5",
           "F1_score": "f1_score", "MAE": "mae", "Corr": "corr"},
}


def sims_classes(values: np.ndarray, classes: int) -> np.ndarray:
    """Class index of each value in [-1, 1] under ``SIMS_BOUNDARIES[classes]``."""
    inner = np.asarray(SIMS_BOUNDARIES[classes][1:-1], dtype=values.dtype)
    return np.searchsorted(inner, values, side="left")  # b[k] < v <= b[k + 1]


def _sims_clipped(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Values clipped to [-1, 1] in float32: MMSA compares its float32 tensors with the boundaries
    in float32, so a value of float32(0.1) falls in (-0.1, 0.1] there, and here too."""
    return np.clip(_as_1d(values, name).astype(np.float32), np.float32(-1), np.float32(1))


def sims_metrics(predictions: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    """MMSA's CH-SIMS regression metrics: prediction and truth clipped to [-1, 1] first, then
    ``mult_acc_2/3/5`` (fraction of equal classes under ``SIMS_BOUNDARIES``), ``f1_score``
    (weighted F1 of the 2-class labels), ``mae`` and ``corr`` (Pearson) of the clipped values."""
    pred, true = _sims_clipped(predictions, "predictions"), _sims_clipped(truth, "truth")
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"predictions {pred.shape} and truth {true.shape} must be the same non-empty length")
    out = {f"mult_acc_{k}": float(np.mean(sims_classes(pred, k) == sims_classes(true, k))) for k in SIMS_BOUNDARIES}
    out["f1_score"] = float(f1_score(sims_classes(true, 2), sims_classes(pred, 2), average="weighted",
                                     zero_division=0))
    pred64, true64 = pred.astype(np.float64), true.astype(np.float64)
    out["mae"] = float(np.mean(np.abs(pred64 - true64)))
    out["corr"] = pearson(pred64, true64)
    return out


def _sims_baseline(train_labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Train mean for MAE/Corr; the train's majority class of each class set for its accuracy and F1."""
    n = truth.size
    mean_metrics = sims_metrics(np.full(n, np.clip(train_labels, -1, 1).mean()), truth)
    out = {"mae": mean_metrics["mae"], "corr": mean_metrics["corr"]}
    train = _sims_clipped(train_labels, "train labels")
    true = _sims_clipped(truth, "truth")
    for k in SIMS_BOUNDARIES:
        majority = _mode(sims_classes(train, k))
        out[f"mult_acc_{k}"] = float(np.mean(sims_classes(true, k) == majority))
        if k == 2:
            constant = np.full(n, int(majority))
            out["f1_score"] = float(f1_score(sims_classes(true, 2), constant, average="weighted", zero_division=0))
    return {name: out[name] for name in ("mult_acc_2", "mult_acc_3", "mult_acc_5", "f1_score", "mae", "corr")}


def mmsa_metrics(values: dict[str, float], metric_set: str = "") -> dict[str, float]:
    """``values`` under MMSA's key names, rounded to 4 decimals as MMSA reports them; ``{}`` for a
    set MMSA does not define (classification)."""
    names = MMSA_NAMES.get(metric_set, {})
    return {mmsa: float(np.round(values[ours], 4)) for mmsa, ours in names.items() if ours in values}
