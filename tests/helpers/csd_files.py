"""Write a small set of CMU-MultimodalSDK computational sequences (``.csd``) as the SDK writes them.

HDF5: one root group named after the sequence, ``data/<video_id>/features`` and ``intervals``
(n, 2, seconds), and ``metadata/<key>``, each a one-element variable-length string dataset
holding JSON. Words are byte strings (n, 1) with ``sp`` for silences; labels are (k, 1) for
MOSI and (k, 7) for MOSEI, sentiment first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

WIDTHS = {"glove_vectors": 6, "FACET_4.2": 4, "COVAREP": 5}
FILES = {  # root name -> file name, as the SDK names its MOSI files
    "words": "CMU_MOSI_TimestampedWords.csd",
    "glove_vectors": "CMU_MOSI_TimestampedWordVectors.csd",
    "FACET_4.2": "CMU_MOSI_Visual_Facet_42.csd",
    "COVAREP": "CMU_MOSI_COVAREP.csd",
    "Opinion Segment Labels": "CMU_MOSI_Opinion_Labels.csd",
    "OpenSMILE": "CMU_MOSI_openSMILE_IS09.csd",
}
STEP = {"FACET_4.2": 1 / 3, "COVAREP": 0.1, "OpenSMILE": 0.2}  # seconds per row of the frame-rate sequences


@dataclass(frozen=True)
class CsdSet:
    """What was written: per video its segments (start, end, label) and words per segment."""

    folder: Path
    segments: dict[str, list[tuple[float, float, float]]]
    words: dict[str, list[list[str]]]


def write_sequence(path: Path, root: str, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One ``.csd`` file in the SDK's format."""
    with h5py.File(path, "w") as handle:
        group = handle.create_group(root)
        videos = group.create_group("data")
        for video, (features, intervals) in data.items():
            entry = videos.create_group(video)
            entry.create_dataset("features", data=features)
            entry.create_dataset("intervals", data=intervals)
        metadata = group.create_group("metadata")
        for name, value in {"root name": root, "computational sequence description": f"{root} (test)",
                            "dimension names": None, "computational sequence version": "1.0"}.items():
            metadata.create_dataset(name, (1,), dtype=h5py.special_dtype(vlen=str))
            metadata[name][0] = json.dumps(value)


def write_mosi_set(folder: Path, videos: dict[str, int], seed: int = 0) -> CsdSet:
    """``videos``: video id -> number of labelled segments; each segment 2-3 s with 3-5 words."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {name: {} for name in FILES}
    segments, words_by_segment = {}, {}
    vocabulary = ["good", "bad", "movie", "really", "the", "plot", "okay"]
    for video, count in videos.items():
        time, spans, labels, word_rows, word_spans, said = 0.5, [], [], [], [], []
        for _ in range(count):
            start = time
            segment_words = []
            for _ in range(int(rng.integers(3, 6))):
                word = str(rng.choice(vocabulary))
                word_rows.append(word)
                word_spans.append((time, time + 0.4))
                segment_words.append(word)
                time += 0.45
            word_rows.append("sp")  # a pause between segments
            word_spans.append((time, time + 0.3))
            spans.append((start, time))
            labels.append(round(float(rng.uniform(-3, 3)), 1))
            said.append(segment_words)
            time += 0.3
        order = rng.permutation(count)  # the label file need not list segments in time order
        data["Opinion Segment Labels"][video] = (np.array(labels)[order].reshape(-1, 1),
                                                 np.array(spans)[order])
        words = np.array([[w.encode()] for w in word_rows])
        data["words"][video] = (words, np.array(word_spans))
        vectors = rng.normal(size=(len(word_rows), WIDTHS["glove_vectors"])).astype(np.float32)
        vectors[[k for k, w in enumerate(word_rows) if w == "sp"]] = 0.0
        data["glove_vectors"][video] = (vectors, np.array(word_spans))
        for name, step in STEP.items():
            starts = np.arange(0.0, time, step)
            width = WIDTHS.get(name, 3)
            data[name][video] = (rng.normal(size=(len(starts), width)).astype(np.float32),
                                 np.stack([starts, starts + step], axis=1))
        segments[video] = sorted(zip([s for s, _ in spans], [e for _, e in spans], labels))
        words_by_segment[video] = said
    for name, file in FILES.items():
        write_sequence(folder / file, name, data[name])
    return CsdSet(folder, segments, words_by_segment)
