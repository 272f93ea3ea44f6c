"""Reading CMU-MultimodalSDK computational sequences (``.csd``) and cutting them into segments.

A ``.csd`` file is HDF5 with one root group named after the sequence (``COVAREP``,
``Opinion Segment Labels``, ...) holding ``data/<video_id>/features`` (n, d) and
``data/<video_id>/intervals`` (n, 2, start and end in seconds) and ``metadata/<key>``, each a
one-element string dataset holding JSON. Word sequences store the words as byte strings (n, 1);
``sp`` marks a silence.

:func:`segment_rows` takes the rows of a sequence that overlap one labelled segment (the
unaligned reading); :func:`word_average` averages them over each word interval inside the
segment (``--align words``, as the SDK's alignment to the words with its averaging collapse).
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import numpy as np

from hcm.core.configs import configs_dir
from hcm.core.errors import UsageError
from hcm.core.files import read_json_object
from hcm.core.names import SPLITS

SILENCE = "sp"  # the SDK's word for a pause


class CsdError(UsageError):
    """A computational sequence that cannot be read; the message names the file and what is wrong."""


class Sequence:
    """One open computational sequence, read video by video (the files can be gigabytes).

    Raises :class:`CsdError` for a file that is not in the SDK's format.
    """

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise CsdError(f"{self.path}: not an HDF5 computational sequence ({error})") from error
        roots = list(self._file.keys())
        group = self._file[roots[0]] if len(roots) == 1 else None
        if group is None or not isinstance(group, h5py.Group) or not isinstance(group.get("data"), h5py.Group):
            self._file.close()
            raise CsdError(f"{self.path}: a computational sequence has one root group holding data/ and metadata/; "
                           f"found top-level entries {roots}")
        self.root: str = roots[0]
        self._data = group["data"]
        self.videos: list[str] = sorted(self._data.keys())
        self.metadata = {name: _metadata(value) for name, value in group.get("metadata", {}).items()}

    def get(self, video: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(features (n, ...), intervals (n, 2) float64)`` of ``video``, None when it has none."""
        entry = self._data.get(video)
        if entry is None:
            return None
        if "features" not in entry or "intervals" not in entry:
            raise CsdError(f"{self.path}: data/{video} lacks features or intervals")
        values, spans = entry["features"][()], np.asarray(entry["intervals"][()], dtype=np.float64)
        if spans.ndim != 2 or spans.shape[1] != 2 or len(spans) != len(values):
            raise CsdError(f"{self.path}: data/{video}: intervals {spans.shape} do not give (start, end) for each "
                           f"of the {len(values)} feature rows")
        return values, spans

    @functools.cached_property
    def width(self) -> int:
        """Feature width (of the first video; 0 for a sequence without videos)."""
        if not self.videos:
            return 0
        shape = self._data[self.videos[0]]["features"].shape
        return int(np.prod(shape[1:]))

    def close(self) -> None:
        self._file.close()


def standard_folds(dataset: str) -> dict[str, str]:
    """video id -> split, from the SDK's standard folds shipped in configs/datasets/folds/."""
    folds = read_json_object(configs_dir() / "datasets" / "folds" / f"{dataset}.json", "standard folds")
    return {video: split for split in SPLITS for video in folds[split]}


def sentiment(values: np.ndarray) -> float:
    """The sentiment of one label row (its first column); NaN for a row without columns."""
    return float(values[0]) if values.size else math.nan


def key(name: str) -> str:
    """A name for matching: lower case, letters and digits only (``FACET 4.2`` -> ``facet42``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _metadata(dataset) -> object:
    """A metadata entry: a one-element string dataset holding JSON (kept as text when it is not JSON)."""
    raw = dataset[()]
    raw = raw[0] if getattr(raw, "shape", ()) else raw
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        return json.loads(text)
    except ValueError:
        return text


def words_of(values: np.ndarray) -> list[str]:
    """A word sequence's rows as text (bytes decoded as UTF-8)."""
    flat = np.asarray(values).reshape(len(values), -1)[:, 0] if len(values) else []
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]


def overlapping(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """Indices of the rows whose interval overlaps ``[start, end]`` (a zero-length row inside counts)."""
    if len(intervals) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = intervals[:, 0], intervals[:, 1]
    return np.flatnonzero((lo < end) & (hi > start) | ((lo == hi) & (lo >= start) & (lo <= end)))


def segment_rows(values: np.ndarray, intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """The rows (m, d) of one video's sequence that overlap the segment, float32 (unaligned)."""
    rows = overlapping(intervals, start, end)
    return np.asarray(values[rows], dtype=np.float32).reshape(len(rows), -1)


def word_average(values: np.ndarray, intervals: np.ndarray, words: np.ndarray) -> np.ndarray:
    """(w, d): per word interval (w, 2), the mean of the rows that overlap it (zeros where none do)."""
    values = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    out = np.zeros((len(words), values.shape[1]), dtype=np.float32)
    for k, (start, end) in enumerate(words):
        rows = overlapping(intervals, start, end)
        if rows.size:
            out[k] = values[rows].mean(axis=0)
    return out
