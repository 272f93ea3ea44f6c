"""The same MOSEI clips in two layouts: MMSA's (label.csv + Raw/<video_id>/<clip_id>.mp4) and
CMU's archive (segmented videos, segmented transcripts, CMU_MOSEI_Labels.csd).

The clips come from a MOSEI sample corpus; its videos are renamed to video ids of the SDK's
standard folds of their split, so that both layouts give every clip the same split.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
from csd_files import write_sequence

from hcm.core.configs import configs_dir


def write_both_layouts(sample: Path, mmsa: Path, cmu: Path, seed: int = 0) -> dict[str, str]:
    """Write ``mmsa`` and ``cmu`` from the MOSEI sample at ``sample``; returns sample video -> fold id."""
    folds = json.loads((configs_dir() / "datasets" / "folds" / "mosei.json").read_text())
    free = {split: iter(ids) for split, ids in folds.items() if split in ("train", "valid", "test")}
    with (sample / "label.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rename: dict[str, str] = {}
    for row in rows:
        rename.setdefault(row["video_id"], next(free[row["mode"]]))
    _write_mmsa(sample, mmsa, rows, rename)
    _write_cmu(sample, cmu, rows, rename, np.random.default_rng(seed))
    return rename


def _write_mmsa(sample: Path, root: Path, rows: list[dict], rename: dict[str, str]) -> None:
    (root / "Raw").mkdir(parents=True)
    with (root / "label.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "video_id": rename[row["video_id"]]})
            _copy(sample / "Raw" / row["video_id"] / f"{row['clip_id']}.mp4",
                  root / "Raw" / rename[row["video_id"]] / f"{row['clip_id']}.mp4")


def _write_cmu(sample: Path, root: Path, rows: list[dict], rename: dict[str, str], rng: np.random.Generator) -> None:
    videos, transcripts = root / "Raw/Videos/Segmented/Combined", root / "Raw/Transcript/Segmented/Combined"
    videos.mkdir(parents=True)
    transcripts.mkdir(parents=True)
    lines: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for row in rows:
        video, clip = rename[row["video_id"]], row["clip_id"]
        start = 1.0 + 3.0 * len(lines[video]) + round(float(rng.uniform(0, 0.5)), 3)
        end = round(start + 2.5, 3)
        lines[video].append(f"{video}___{clip}___{start}___{end}___{row['text']}")
        emotions = np.round(rng.uniform(0, 3, 6) * 3) / 3
        labels[video][0].append([float(row["label"]), *emotions])
        labels[video][1].append([start, end])
        _copy(sample / "Raw" / row["video_id"] / f"{clip}.mp4", videos / f"{video}_{clip}.mp4")
    for video, text in lines.items():
        (transcripts / f"{video}.txt").write_text("\n".join(reversed(text)) + "\n", encoding="utf-8")
    (root / "Labels").mkdir()
    write_sequence(root / "Labels" / "CMU_MOSEI_Labels.csd", "All Labels",
                   {video: (np.array(values), np.array(spans)) for video, (values, spans) in labels.items()})


def _copy(source: Path, target: Path) -> None:
    if source.exists():  # a sample's missing clip stays missing
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
