"""Small MMSA-format feature pickles for the import tests, with a learnable signal.

Two storage forms, as found in the field: the distributed files (float32 features, ids and
texts in object arrays) and files of MMSA's feature-extraction tool (float64 features, plain
``<U`` string arrays, the newest pickle protocol). Each label is carried by the first vision
and audio feature of every valid row (plus noise) and by the words of ``raw_text``, so a small
model can beat the train-mean and majority baselines. Unaligned files pad after ``*_lengths``
rows; aligned files pad some sequences with all-zero rows at the end.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hcm.pipeline.importers import mmsa as mmsa_importer

WIDTHS = {"mosi": (5, 20), "mosei": (74, 35), "sims": (33, 709)}  # (audio, vision) as in the real files
RANGES = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}
WORDS = {"en": (["awful", "bad", "hated", "boring"], ["great", "good", "liked", "amazing"]),
         "zh": (["糟糕", "讨厌", "难看"], ["喜欢", "很好", "精彩"])}
SIZES = (32, 12, 12)  # train, valid, test items


@dataclass
class Spec:
    """What to write."""

    dataset: str = "mosi"
    aligned: bool = False
    tool_format: bool = False  # float64 + plain string arrays + newest protocol
    sizes: tuple[int, int, int] = SIZES
    seed: int = 0
    rows: int = 10  # stored rows per sequence (T)


def _labels(rng: np.random.Generator, n: int, top: float) -> np.ndarray:
    steps = np.round(np.linspace(-top, top, 11), 1)  # multiples of 0.6 (MOSI/MOSEI) or 0.2 (SIMS); 0 included
    return rng.choice(steps, size=n).astype(np.float32)


def _text(rng: np.random.Generator, label: float, language: str) -> str:
    negative, positive = WORDS[language]
    words = list(rng.choice(positive if label > 0 else negative, size=2)) if label != 0 else []
    joiner = "" if language == "zh" else " "
    filler = ["我", "说"] if language == "zh" else ["well", "i", "think"]
    return joiner.join(filler + words)


def _sequence(rng: np.random.Generator, labels: np.ndarray, width: int, rows: int, lengths: np.ndarray,
              scale: float) -> np.ndarray:
    values = rng.normal(size=(len(labels), rows, width)).astype(np.float64)  # (N, T, d)
    values[:, :, 0] = labels[:, None] / scale * 2.0 + 0.3 * rng.normal(size=(len(labels), rows))
    for i, length in enumerate(lengths):
        values[i, length:] = 0.0  # padding
    return values


def split_arrays(spec: Spec, name: str, start: int, n: int, rng: np.random.Generator) -> dict:
    """One split: ids of 4 clips per video (videos never cross splits), features, labels."""
    top = RANGES[spec.dataset]
    audio_width, vision_width = WIDTHS[spec.dataset]
    labels = _labels(rng, n, top)
    language = "zh" if spec.dataset == "sims" else "en"
    if spec.dataset == "sims":
        ids = [f"video_{(start + i) // 4:04d}$_${(start + i) % 4 + 1:04d}" for i in range(n)]
    else:
        ids = [f"{name}Vid{(start + i) // 4:02d}$_${(start + i) % 4 + 1}" for i in range(n)]
    if spec.aligned:
        lengths = {key: np.where(rng.random(n) < 0.5, spec.rows, rng.integers(3, spec.rows, n)) for key in "av"}
    else:
        lengths = {key: rng.integers(2, spec.rows + 1, n) for key in "av"}
    out = {
        "id": ids, "raw_text": [_text(rng, float(y), language) for y in labels],
        "audio": _sequence(rng, labels, audio_width, spec.rows, lengths["a"], top),
        "vision": _sequence(rng, labels, vision_width, spec.rows, lengths["v"], top),
        "regression_labels": labels, "annotations": ["Positive" if y > 0 else "Negative" if y < 0 else "Neutral"
                                                     for y in labels],
        "text": np.zeros((n, spec.rows, 300), dtype=np.float32),  # GloVe, unused by hcm
    }
    if not spec.aligned:
        out["audio_lengths"], out["vision_lengths"] = lengths["a"], lengths["v"]
    if spec.dataset == "sims":
        for modality in "TAV":
            out[f"regression_labels_{modality}"] = np.clip(labels + rng.normal(0, 0.2, n), -1, 1).astype(np.float32)
    if not spec.tool_format:
        out["classification_labels"] = np.sign(labels).astype(np.float32) + 1
    return out


def storage_form(arrays: dict, tool_format: bool) -> dict:
    """Object arrays and float32 (distributed files) or plain string arrays and float64 (tool files)."""
    out = {}
    for key, value in arrays.items():
        if key in ("id", "raw_text", "annotations"):
            out[key] = np.array(value) if tool_format else np.array(value, dtype=object)
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            out[key] = value.astype(np.float64 if tool_format else np.float32)
        else:
            out[key] = value
    return out


def make_arrays(spec: Spec) -> dict[str, dict]:
    """``{"train": {...}, "valid": {...}, "test": {...}}`` as in the files (before storage form)."""
    rng = np.random.default_rng(spec.seed)
    splits, start = {}, 0
    for name, n in zip(("train", "valid", "test"), spec.sizes):
        splits[name] = split_arrays(spec, name, start, n, rng)
        start += n
    return splits


def write_file(path: Path, spec: Spec, arrays: dict | None = None) -> Path:
    """Write ``arrays`` (default: :func:`make_arrays`) in the spec's storage form."""
    arrays = arrays if arrays is not None else make_arrays(spec)
    data = {name: storage_form(split, spec.tool_format) for name, split in arrays.items()}
    protocol = pickle.HIGHEST_PROTOCOL if spec.tool_format else 2
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


_BUILT: dict[tuple, list] = {}


@pytest.fixture(autouse=True)
def reuse_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build each set of tiny text encoders once (the tiny CLIP takes seconds); encoding is stateless."""
    build = mmsa_importer.build_text_encoders

    def cached(profile, weights, device, parser):
        key = (json.dumps(profile.recipe(), sort_keys=True), type(parser).__name__, str(device))
        if key not in _BUILT:
            _BUILT[key] = build(profile, weights, device, parser)
        return _BUILT[key]

    monkeypatch.setattr(mmsa_importer, "build_text_encoders", cached)
