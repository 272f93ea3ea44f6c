"""CMU-MOSEI in the layout CMU distributes it, read without rearranging.

    <root>/Raw/Videos/Segmented/Combined/<video_id>_<segment>.mp4
    <root>/Raw/Transcript/Segmented/Combined/<video_id>.txt    <video_id>___<segment>___<start>___<end>___<text>
    <root>/.../CMU_MOSEI_Labels.csd                            (anywhere up to three folders deep)

The items are the labelled intervals of ``CMU_MOSEI_Labels.csd`` (the SDK's ``All Labels``:
per video, intervals (k, 2) and labels (k, 7): sentiment, happy, sad, anger, surprise, disgust,
fear). Each is matched to the transcript segment with the same start and end (within
:data:`MATCH_SECONDS`), which gives its id ``<video_id>$_$<segment>``, its text and its clip.
The split is the SDK's standard fold of the video (configs/datasets/folds/mosei.json). Groups,
clip order and context are those of the MMSA layout, so the same clips give the same cache;
``labels`` holds ``annotation`` (Positive / Neutral / Negative by the sign of the sentiment, as
MMSA's label.csv has it) and the six emotion scores.

A labelled interval without a transcript segment, a label that is not a score in [-3, 3] and a
video in no standard fold are rejected rows naming the file; transcript lines that cannot be
read are rejected naming file and line.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from hcm.pipeline.datasets.base import (
    INVALID_ID,
    INVALID_LABEL,
    UNKNOWN_SPLIT,
    Utterance,
    order_groups,
    read_lines,
    rejected_row,
    repair_note,
)
from hcm.pipeline.importers.csd_file import Sequence, sentiment, standard_folds
from hcm.pipeline.media import MediaRef

log = logging.getLogger(__name__)

VIDEOS = Path("Raw/Videos/Segmented/Combined")
TRANSCRIPTS = Path("Raw/Transcript/Segmented/Combined")
LABELS_FILE = "CMU_MOSEI_Labels.csd"
LABELS_ROOT = "All Labels"
EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
MATCH_SECONDS = 0.05  # label and transcript intervals of one segment agree within this
SEPARATOR = "___"


def is_cmu_archive(root: Path) -> bool:
    """Whether ``root`` holds CMU's layout (and no MMSA ``label.csv``)."""
    return not (root / "label.csv").exists() and (root / TRANSCRIPTS).is_dir()


def labels_file(root: Path) -> Path | None:
    """``CMU_MOSEI_Labels.csd`` at most three folders below ``root``."""
    for pattern in (LABELS_FILE, f"*/{LABELS_FILE}", f"*/*/{LABELS_FILE}", f"*/*/*/{LABELS_FILE}"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    return None


def read_transcripts(root: Path) -> tuple[dict[str, list[tuple[str, float, float, str, str]]], list[Utterance]]:
    """video -> [(segment, start, end, text, note)] from the segmented transcripts; bad lines rejected."""
    segments: dict[str, list[tuple[str, float, float, str, str]]] = defaultdict(list)
    rejected: list[Utterance] = []
    for path in sorted((root / TRANSCRIPTS).glob("*.txt")):
        lines, repaired = read_lines(path)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split(SEPARATOR, 4)
            try:
                video, segment, start, end, text = parts
                start_s, end_s = float(start), float(end)
            except ValueError:
                rejected.append(rejected_row(f"{path.name}:{number}", "", INVALID_ID,
                                             f"{path} line {number}: not <video_id>___<segment>___<start>___<end>"
                                             f"___<text>"))
                continue
            note = repair_note(path, [number] if number in repaired else []).get("text_repair", "")
            segments[video.strip()].append((segment.strip(), start_s, end_s, text.strip(), note))
    return segments, rejected


def read_cmu_archive(root: Path) -> list[Utterance]:
    """Every labelled interval as an utterance (see the module docstring)."""
    path = labels_file(root)
    split_of = standard_folds("mosei")
    transcripts, rejected = read_transcripts(root)
    labels = Sequence(path)
    by_video: dict[str, list[Utterance]] = defaultdict(list)
    try:
        for video in labels.videos:
            values, spans = labels.get(video)
            values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
            for row in np.argsort(spans[:, 0], kind="stable"):
                made = _utterance(root, path, video, spans[row], values[row], transcripts.get(video, []),
                                  split_of.get(video))
                (rejected if made.dropped else by_video[video]).append(made)
    finally:
        labels.close()
    return order_groups(by_video) + rejected


def _utterance(root: Path, path: Path, video: str, span: np.ndarray, values: np.ndarray,
               segments: list[tuple[str, float, float, str, str]], split: str | None) -> Utterance:
    """One labelled interval matched to its transcript segment, or a rejected row saying why not."""
    where = f"{path} data/{video} interval [{span[0]:.3f}, {span[1]:.3f}]"
    match = min(segments, key=lambda s: abs(s[1] - span[0]) + abs(s[2] - span[1]), default=None)
    if match is None or abs(match[1] - span[0]) + abs(match[2] - span[1]) > MATCH_SECONDS:
        return rejected_row(f"{video}@{span[0]:.3f}", split or "", INVALID_ID,
                            f"{where}: no segment of {TRANSCRIPTS / (video + '.txt')} has this start and end", video)
    segment, _, _, text, note = match
    item_id = f"{video}$_${segment}"
    if split is None:
        return rejected_row(item_id, "", UNKNOWN_SPLIT, f"{where}: video {video} is in none of the CMU-MultimodalSDK "
                                                        f"standard folds", video)
    score = sentiment(values)
    if not math.isfinite(score) or not -3.0 <= score <= 3.0:
        return rejected_row(item_id, split, INVALID_LABEL, f"{where}: sentiment {score} is not a score in [-3, 3]",
                            video)
    labels = {"annotation": "Positive" if score > 0 else "Negative" if score < 0 else "Neutral",
              **{name: float(v) for name, v in zip(EMOTIONS, values[1:])}}
    clip = MediaRef(root / VIDEOS / f"{video}_{segment}.mp4")
    return Utterance(id=item_id, split=split, label=score, labels=labels, text=text, group=video, position=0,
                     video=clip, audio=clip, notes={"text_repair": note} if note else {})
