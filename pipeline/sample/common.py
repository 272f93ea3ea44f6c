"""Small helpers shared by the sample corpus planners: seeding, label draws, CSV text, label columns."""

from __future__ import annotations

import csv
import dataclasses
import io
import zlib
from collections.abc import Sequence

import numpy as np


def corpus_rng(seed: int, stream: str) -> np.random.Generator:
    """A generator for one named stream of one corpus; streams of one seed are independent."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.default_rng([seed, zlib.crc32(stream.encode("utf-8"))])


def stratified(labels: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` labels cycling through ``labels`` from a random start, in shuffled order.

    Every label appears once ``count >= len(labels)``, which keeps each split covering each class.
    """
    offset = int(rng.integers(len(labels)))
    cycle = [labels[(offset + i) % len(labels)] for i in range(count)]
    return [cycle[i] for i in rng.permutation(count)]


def check_distinct_faults(faults: Sequence, dataset: str, n: int) -> None:
    """Refuse a fault plan that puts two faults on one utterance (too few utterances)."""
    items = [(fault.split, fault.item) for fault in faults]
    if len(set(items)) < len(items):
        raise ValueError(f"{dataset}: --n {n} leaves too few utterances for every fault to hit "
                         "a different one; use a larger --n with --faults")


def csv_line(row: Sequence, lineterminator: str = "\n") -> str:
    """One CSV record (minimal quoting, like pandas and the real archives) as a string."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=lineterminator).writerow(row)
    return buffer.getvalue()


def light(item):
    """``item`` (a frozen dataclass with ``content``) without its content: what fault placement reads,
    small enough to keep for every utterance of a large corpus."""
    return dataclasses.replace(item, content=None)


def score_text(value: float) -> str:
    """A score as label.csv writes it: at most 4 decimals, never ``-0.0``."""
    return repr(round(value, 4) + 0.0)  # + 0.0 turns -0.0 into 0.0


def annotation(label: float) -> str:
    """The ``annotation`` column of the MMSA label files: the sign of the score as a word."""
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"


def split_sizes(total: int, parts: int, rng: np.random.Generator, low: int, high: int) -> list[int]:
    """Cut ``total`` into ``parts`` sizes, each near uniform in [low, high], summing to ``total``.

    The rounding remainder is handed out (or taken back) one item per part in a random order,
    so no part absorbs all of it.
    """
    if parts < 1 or total < parts:
        raise ValueError(f"cannot cut {total} items into {parts} non-empty groups")
    sizes = rng.integers(low, high + 1, parts).astype(float)
    sizes = np.maximum(1, np.floor(sizes * total / sizes.sum())).astype(int)
    order = rng.permutation(parts)
    diff, k = total - int(sizes.sum()), 0
    while diff != 0:
        i = order[k % parts]
        k += 1
        step = 1 if diff > 0 else -1
        if sizes[i] + step >= 1:
            sizes[i] += step
            diff -= step
    return [int(s) for s in sizes]
