"""The numbers the paper reports for HCMNet, and seed statistics set beside them.

``configs/paper/results.csv`` holds every HCMNet number of the paper's Tables 2, 3 and 4, one
row each: ``table, dataset, variant, column, metric, value, unit``. ``column`` is the header as
printed, ``metric`` hcm's metric name (``training/metrics.py``), ``value`` the number as printed
and ``unit`` ``%`` for percentages (hcm computes fractions) or empty for MAE and Corr.

- Table 2: per-class F1 and weighted F1 on IEMOCAP and MELD (the paper's "Sad"/"Angry" on MELD
  are hcm's classes ``sadness``/``anger``, its "Anger" on IEMOCAP is ``angry``).
- Table 3: CMU-MOSEI. The paper does not say which Acc-2; its baselines' numbers (MMIM 85.97 /
  85.94) are their non-0 values, so Acc-2 and F1 are ``acc2_non0`` and ``f1_non0``.
- Table 4: accuracy and weighted F1 of the variants on IEMOCAP and MELD. The paper's table
  lost its row breaks in print: the last two cells list the numbers of w/o ACL, w/o graph
  learning and w/o CDC in the order of those rows; the file gives each row its own pair.

Figure 3 is a plot without printed numbers; ``hcm tune --grid`` draws its own.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcm.core.configs import configs_dir
from hcm.core.tables import DECIMAL_METRICS, metric_cell

RESULTS_FILE = Path("paper") / "results.csv"
FIELDS = ("table", "dataset", "variant", "column", "metric", "value", "unit")
LOWER_IS_BETTER = ("mae",)


@dataclass(frozen=True)
class PaperNumber:
    """One number of the paper's tables."""

    table: int  # 2, 3 or 4
    dataset: str  # iemocap, meld or mosei
    variant: str  # hcm's variant name (Table 4 rows; "full" elsewhere)
    column: str  # the column header as printed
    metric: str  # hcm's metric name
    value: float  # as printed (a percentage where unit is "%")
    unit: str  # "%" or ""

    @property
    def fraction(self) -> float:
        """The value on hcm's scale (fractions for percentages)."""
        return self.value / 100.0 if self.unit == "%" else self.value


def load_paper_numbers(path: Path | None = None) -> list[PaperNumber]:
    """Every row of the paper's results file, typed and checked (a malformed row names itself)."""
    path = path or configs_dir() / RESULTS_FILE
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: the header must be {','.join(FIELDS)}, got {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                number = PaperNumber(int(row["table"]), row["dataset"], row["variant"], row["column"],
                                     row["metric"], float(row["value"]), row["unit"])
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path} line {line}: {error}") from error
            if number.unit not in ("%", ""):
                raise ValueError(f"{path} line {line}: unit must be '%' or empty, got {number.unit!r}")
            rows.append(number)
    return rows


def paper_numbers(dataset: str, variant: str = "full") -> list[PaperNumber]:
    """The paper's numbers for ``dataset`` and ``variant``: Tables 2/3 first, then Table 4's
    accuracy (a metric reported in two tables appears once, from the first)."""
    seen, out = set(), []
    for number in load_paper_numbers():
        if number.dataset == dataset and number.variant == variant and number.metric not in seen:
            seen.add(number.metric)
            out.append(number)
    return out


def paper_datasets() -> list[str]:
    """The datasets the paper reports numbers for."""
    return sorted({number.dataset for number in load_paper_numbers()})


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample std and a 95 % Student-t interval of one metric over seeds."""

    n: int
    mean: float
    std: float  # sample std (ddof=1); 0 for one seed
    low: float  # 95 % t-interval; NaN for fewer than two seeds
    high: float


def seed_summary(values: Sequence[float], confidence: float = 0.95) -> SeedSummary:
    """``mean ± t_{n-1} * std / sqrt(n)`` over the finite ``values`` (scipy.stats.t)."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if array.size == 1:
        return SeedSummary(1, mean, 0.0, math.nan, math.nan)
    from scipy import stats  # here, not at the top: `hcm reproduce --dataset` is checked with paper_datasets()

    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=array.size - 1)) * std / math.sqrt(array.size)
    return SeedSummary(int(array.size), mean, std, mean - half, mean + half)


def display_scale(metric: str) -> tuple[float, int]:
    """(factor, decimals) a metric is shown with: MAE/Corr as decimals, the rest as percentages
    (``hcm.core.tables.DECIMAL_METRICS``)."""
    return (1.0, 3) if metric in DECIMAL_METRICS else (100.0, 2)


def show(metric: str, value: float | None) -> str:
    """One number as tables show it (``-`` for a missing or non-finite one): :func:`hcm.core.tables.metric_cell`."""
    return metric_cell(metric, value)
