"""Reading and checking an MMSA feature pickle (``aligned_50.pkl``, ``unaligned_50.pkl``, ``unaligned_39.pkl``).

The file is ``{"train": {...}, "valid": {...}, "test": {...}}``; each split holds equal-length
arrays: ``id``, ``raw_text``, ``audio`` (N, T_a, d_a), ``vision`` (N, T_v, d_v) and
``regression_labels``, and optionally ``audio_lengths``/``vision_lengths`` (unaligned files),
``regression_labels_T/_A/_V`` (CH-SIMS), ``classification_labels`` and ``annotations``.
``text`` (GloVe) and ``text_bert`` (BERT input ids) are not read: hcm encodes ``raw_text`` itself.

A pickle can run code while it loads. By default the file is read as data only
(:func:`hcm.core.pickledata.read_data` with :data:`hcm.core.numpy_pickle.NUMPY_RULES`): hcm
walks the opcodes itself and builds lists, dicts, tuples, strings, bytes, numbers and numpy
arrays of plain dtypes from checked parts, never calling anything the file names, and refuses
everything else; ``trust=True`` (``--trust-pickle``) uses the plain :mod:`pickle` loader instead.

Every problem that makes the file unusable raises :class:`MmsaFileError` naming the file,
the split, the key and the value; rows are sliced lazily by :func:`sequence_rows`.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcm.core.errors import UsageError
from hcm.core.names import SPLITS
from hcm.core.numpy_pickle import NUMPY_RULES
from hcm.core.pickledata import DamagedPickleError, PickleDataError, read_data

REQUIRED_KEYS = ("id", "raw_text", "audio", "vision", "regression_labels")
LENGTH_KEYS = {"audio": "audio_lengths", "vision": "vision_lengths"}
EXTRA_LABELS = {"regression_labels_T": "label_T", "regression_labels_A": "label_A",
                "regression_labels_V": "label_V", "classification_labels": "classification"}
SHOWN = 5  # offending rows quoted in an error message


class MmsaFileError(UsageError):
    """An MMSA file that cannot be imported; the message names the file, split, key and value."""


class UnsafePickleError(MmsaFileError):
    """The pickle references something other than plain data; nothing of it was run."""


def load_pickle(path: Path, trust: bool = False) -> tuple[Any, str]:
    """The object in ``path`` (safe loader by default, plain pickle when ``trust`` is set) and the
    sha256 of the file's bytes, from the one read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MmsaFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    try:
        if trust:
            return pickle.loads(data), digest  # the user vouched for the file (--trust-pickle)
        return read_data(data, NUMPY_RULES), digest
    except DamagedPickleError as exc:
        raise MmsaFileError(f"{path} is not a readable pickle ({exc}); pass an MMSA feature file such as "
                            f"aligned_50.pkl, unaligned_50.pkl or unaligned_39.pkl") from None
    except PickleDataError as exc:
        raise UnsafePickleError(
            f"{path}: {exc}, which the safe reader refuses (a pickle can run code when it loads; hcm "
            f"reads it as data only: numpy arrays of plain dtypes, lists, dicts, strings and numbers). "
            f"Nothing from the file was run. If you trust where this file comes from, pass --trust-pickle."
        ) from None
    except Exception as exc:  # plain pickle raises many types for non-pickles and truncated files
        raise MmsaFileError(
            f"{path} is not a readable pickle ({type(exc).__name__}: {exc}); pass an MMSA feature file "
            f"such as aligned_50.pkl, unaligned_50.pkl or unaligned_39.pkl"
        ) from exc


@dataclass
class MmsaSplit:
    """One split of the file, checked; features stay as stored until :func:`sequence_rows`."""

    name: str
    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # (N,) float64, exactly the stored values
    extra_labels: list[dict]  # per row: label_T/A/V, classification, annotation (those present)
    sequences: dict[str, np.ndarray]  # "audio"/"vision" -> (N, T, d)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)  # "audio"/"vision" -> (N,), unaligned only

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class MmsaFile:
    """A checked MMSA file."""

    path: Path
    aligned: bool  # no ``*_lengths``: every row of every sequence is stored (word-aligned files)
    dims: dict[str, int]  # "audio"/"vision" -> feature width
    splits: dict[str, MmsaSplit]
    sha256: str = ""  # of the file's bytes (the recipe's source)

    def __len__(self) -> int:
        return sum(len(s) for s in self.splits.values())


def _strings(path: Path, split: str, key: str, values: Any, none_ok: bool = False) -> list[str]:
    """``values`` as Python strings (bytes decoded as UTF-8; ``None`` read as "" where ``none_ok``)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise MmsaFileError(f"{path}: {split}[{key!r}] is a {type(values).__name__}, expected an array of strings")
    out = []
    for row, value in enumerate(values):
        if value is None and none_ok:
            value = ""
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MmsaFileError(f"{path}: {split}[{key!r}] row {row} is not UTF-8 text ({exc})") from exc
        if not isinstance(value, str):
            raise MmsaFileError(f"{path}: {split}[{key!r}] row {row} holds a value of type {type(value).__name__}, "
                                f"expected a string")
        out.append(str(value))
    return out


def _numbers(path: Path, split: str, key: str, values: Any, n: int) -> np.ndarray:
    """``values`` as a float64 vector of ``n`` entries (an (N, 1) column is accepted)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MmsaFileError(f"{path}: {split}[{key!r}] is not numeric ({exc})") from exc
    if array.size != n or (array.ndim > 1 and array.shape[0] != n):
        raise MmsaFileError(f"{path}: {split}[{key!r}] has shape {array.shape}, expected {n} values "
                            f"(one per id); the file's arrays disagree in length")
    return array.reshape(n)


def _sequence(path: Path, split: str, key: str, values: Any, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 3 or array.shape[0] != n or array.dtype.kind not in "fiu":
        raise MmsaFileError(f"{path}: {split}[{key!r}] is {array.dtype}{list(array.shape)}, expected a numeric "
                            f"({n}, T, d) array: {n} ids, T rows of d features each")
    return array


def _check_labels(path: Path, split: str, labels: np.ndarray, ids: list[str], label_range: tuple[float, float],
                  dataset: str) -> None:
    low, high = label_range
    bad = np.flatnonzero(~np.isfinite(labels) | (labels < low) | (labels > high))
    if bad.size:
        shown = ", ".join(f"row {i} ({ids[i]!r}) = {float(labels[i])!r}" for i in bad[:SHOWN])
        raise MmsaFileError(
            f"{path}: {bad.size} regression label(s) of split {split!r} are not finite numbers in "
            f"[{low:g}, {high:g}], the range of --dataset {dataset}: {shown}. Check that the file is a "
            f"{dataset} file (CMU-MOSI/MOSEI labels lie in [-3, 3], CH-SIMS labels in [-1, 1])."
        )


def _extra_labels(path: Path, split: str, raw: dict, n: int) -> list[dict]:
    rows: list[dict] = [{} for _ in range(n)]
    for key, name in EXTRA_LABELS.items():
        if key in raw:
            for row, value in zip(rows, _numbers(path, split, key, raw[key], n)):
                row[name] = float(value) if np.isfinite(value) else None
    if "annotations" in raw:
        for row, value in zip(rows, _strings(path, split, "annotations", raw["annotations"])):
            row["annotation"] = value
    return rows


def read_split(path: Path, name: str, raw: Any, label_range: tuple[float, float], dataset: str) -> MmsaSplit:
    """Check one split's arrays and return them."""
    if not isinstance(raw, dict):
        raise MmsaFileError(f"{path}: split {name!r} is a {type(raw).__name__}, expected a dict of arrays")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise MmsaFileError(f"{path}: split {name!r} lacks the key(s) {missing}; it has {sorted(map(str, raw))}. "
                            f"An MMSA file needs {list(REQUIRED_KEYS)} in every split.")
    ids = _strings(path, name, "id", raw["id"])
    n = len(ids)
    texts = _strings(path, name, "raw_text", raw["raw_text"], none_ok=True)
    if len(texts) != n:
        raise MmsaFileError(f"{path}: split {name!r} has {n} ids but {len(texts)} raw_text entries")
    labels = _numbers(path, name, "regression_labels", raw["regression_labels"], n)
    _check_labels(path, name, labels, ids, label_range, dataset)
    sequences = {key: _sequence(path, name, key, raw[key], n) for key in LENGTH_KEYS}
    lengths = {key: _numbers(path, name, length_key, raw[length_key], n)
               for key, length_key in LENGTH_KEYS.items() if length_key in raw}
    if len(lengths) == 1:
        raise MmsaFileError(f"{path}: split {name!r} has {LENGTH_KEYS[next(iter(lengths))]} but not the other "
                            f"modality's lengths; unaligned files carry both audio_lengths and vision_lengths")
    return MmsaSplit(name, ids, texts, labels, _extra_labels(path, name, raw, n), sequences, lengths)


def read_mmsa_file(path: str | Path, dataset: str, label_range: tuple[float, float],
                   trust: bool = False) -> MmsaFile:
    """Load and check an MMSA file (see the module docstring); raise MmsaFileError when unusable."""
    path = Path(path)
    data, digest = load_pickle(path, trust)
    if not isinstance(data, dict):
        raise MmsaFileError(f"{path} holds a {type(data).__name__}, expected a dict with the splits {list(SPLITS)}")
    missing = [split for split in SPLITS if split not in data]
    if missing:
        raise MmsaFileError(f"{path} lacks the split(s) {missing}; it has {sorted(map(str, data))}. "
                            f"An MMSA file holds {list(SPLITS)}.")
    splits = {name: read_split(path, name, data[name], label_range, dataset) for name in SPLITS}
    aligned = {name: not split.lengths for name, split in splits.items()}
    if len(set(aligned.values())) > 1:
        raise MmsaFileError(f"{path}: some splits carry audio/vision lengths and some do not ({aligned}); "
                            f"a file is either aligned (no lengths) or unaligned (lengths everywhere)")
    dims = {}
    for key in LENGTH_KEYS:
        widths = {name: int(split.sequences[key].shape[2]) for name, split in splits.items()}
        if len(set(widths.values())) > 1:
            raise MmsaFileError(f"{path}: {key!r} has a different feature width per split ({widths})")
        dims[key] = next(iter(widths.values()))
    return MmsaFile(path, next(iter(aligned.values())), dims, splits, digest)


@dataclass
class Rows:
    """The usable rows of one item's sequence and what happened to them."""

    values: np.ndarray  # (n, d) float32
    nonfinite: int = 0  # values that were NaN or +-Inf, now 0
    problem: str = ""  # why no row is usable (the modality is then masked)
    note: str = ""  # a remark that does not mask the modality


def sequence_rows(split: MmsaSplit, index: int, key: str, trim_zero_ends: bool) -> Rows:
    """Rows of ``split.sequences[key][index]``: non-finite values set to 0 (as MMSA's loader
    does), then the first ``length`` rows (unaligned files) or, for aligned files with
    ``trim_zero_ends``, the rows between the first and the last row that is not all zeros."""
    stored = np.asarray(split.sequences[key][index], dtype=np.float32)  # (T, d)
    bad = ~np.isfinite(stored)
    nonfinite = int(bad.sum())
    if nonfinite:
        stored = np.where(bad, np.float32(0), stored)
    if key in split.lengths:
        return _by_length(stored, float(split.lengths[key][index]), LENGTH_KEYS[key], nonfinite)
    if not trim_zero_ends:
        return Rows(stored, nonfinite)
    used = np.flatnonzero(np.any(stored != 0, axis=1))
    if used.size == 0:
        return Rows(stored[:0], nonfinite, f"all {len(stored)} stored {key} rows are zero")
    return Rows(stored[used[0]:used[-1] + 1], nonfinite)


def _by_length(stored: np.ndarray, length: float, length_key: str, nonfinite: int) -> Rows:
    total = len(stored)
    if not np.isfinite(length) or length < 0 or length != int(length):
        return Rows(stored[:0], nonfinite, f"{length_key} {length!r} is not a row count")
    if length == 0:
        return Rows(stored[:0], nonfinite, f"{length_key} is 0")
    if length > total:
        return Rows(stored, nonfinite, note=f"{length_key} {int(length)} exceeds the {total} stored rows; "
                                            f"all {total} used")
    return Rows(stored[:int(length)], nonfinite)
