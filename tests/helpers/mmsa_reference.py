"""An independent implementation of the MMSA framework's regression metrics (MetricsTop), from
the definitions in REFERENCE.md section 2 and MMSA's published formulas, for the tests.

Written in a deliberately different style from hcm.training.metrics (loops over items,
explicit interval tests, no sklearn): MMSA evaluates float32 tensors, so values are cast to
float32 before any clipping, rounding or class-boundary test, and each reported value is
rounded to 4 decimals.
"""

from __future__ import annotations

import math

import numpy as np


def weighted_f1(truth: list, pred: list) -> float:
    """Support-weighted mean of per-class F1 over the classes present in the truth or the predictions."""
    classes = sorted(set(truth) | set(pred))
    total = 0.0
    for c in classes:
        tp = sum(1 for t, p in zip(truth, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, pred) if t == c and p != c)
        f1 = 0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
        total += f1 * sum(1 for t in truth if t == c)
    return total / len(truth)


def _pearson(a: list, b: list) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb)


def _round(value: float) -> float:
    return float(np.round(value, 4))


def reference_mosei(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MMSA's MOSI/MOSEI regression set."""
    p = [float(v) for v in np.asarray(pred, np.float32)]
    t = [float(v) for v in np.asarray(truth, np.float32)]
    n = len(p)

    def mult(bound: float) -> float:
        clip = lambda v: min(max(v, -bound), bound)  # noqa: E731
        return sum(1 for a, b in zip(p, t) if np.round(clip(a)) == np.round(clip(b))) / n

    non_zero = [i for i in range(n) if t[i] != 0]
    has0_t, has0_p = [v >= 0 for v in t], [v >= 0 for v in p]
    non0_t, non0_p = [t[i] > 0 for i in non_zero], [p[i] > 0 for i in non_zero]
    return {
        "Has0_acc_2": _round(sum(a == b for a, b in zip(has0_t, has0_p)) / n),
        "Has0_F1_score": _round(weighted_f1(has0_t, has0_p)),
        "Non0_acc_2": _round(sum(a == b for a, b in zip(non0_t, non0_p)) / len(non_zero)),
        "Non0_F1_score": _round(weighted_f1(non0_t, non0_p)),
        "Mult_acc_5": _round(mult(2.0)), "Mult_acc_7": _round(mult(3.0)),
        "MAE": _round(sum(abs(a - b) for a, b in zip(p, t)) / n), "Corr": _round(_pearson(p, t)),
    }


def _interval_class(value: np.float32, edges: list[float]) -> int:
    """k with edges[k] < value <= edges[k+1], the comparison done in float32 as MMSA's tensors are."""
    for k in range(len(edges) - 1):
        if value > np.float32(edges[k]) and value <= np.float32(edges[k + 1]):
            return k
    raise AssertionError(f"{value} is outside {edges}")


def reference_sims(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MMSA's CH-SIMS regression set."""
    p = [np.float32(min(max(v, np.float32(-1)), np.float32(1))) for v in np.asarray(pred, np.float32)]
    t = [np.float32(min(max(v, np.float32(-1)), np.float32(1))) for v in np.asarray(truth, np.float32)]
    n = len(p)
    edges = {2: [-1.01, 0.0, 1.01], 3: [-1.01, -0.1, 0.1, 1.01], 5: [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]}
    classes = {k: ([_interval_class(v, e) for v in p], [_interval_class(v, e) for v in t]) for k, e in edges.items()}
    out = {f"Mult_acc_{k}": _round(sum(a == b for a, b in zip(*classes[k])) / n) for k in edges}
    out["F1_score"] = _round(weighted_f1(classes[2][1], classes[2][0]))
    out["MAE"] = _round(sum(abs(float(a) - float(b)) for a, b in zip(p, t)) / n)
    out["Corr"] = _round(_pearson([float(v) for v in p], [float(v) for v in t]))
    return out
