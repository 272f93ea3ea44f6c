"""Where a cached item came from: its raw media, found again through the dataset's reader.

A cache keeps features, not media. To show an item's frames or play its clip (``hcm explain``),
the dataset is read again from the root the cache was extracted from (the manifest's
``source.data_root``; a cache made before hcm recorded it: the dataset's default root in the
workspace) and the item is looked up by id. Nothing is found (``None``) when that root is gone or
no longer holds the item; callers then show row indices instead of times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hcm.cache.manifest import load_manifest
from hcm.core.workspace import Workspace
from hcm.pipeline.datasets import get_dataset
from hcm.pipeline.datasets.base import Utterance
from hcm.pipeline.media import MediaError, MediaRef, clip_window, frame_targets, read_audio, read_frames, segment_bounds
from hcm.pipeline.profiles import Sampling

log = logging.getLogger(__name__)


def data_root(cache: Path, workspace: Workspace | None = None) -> tuple[str, Path | None]:
    """The cache's dataset name and the raw root it was read from (None when it is not there now)."""
    manifest = load_manifest(cache, save=False)
    dataset = str(manifest["dataset"])
    recorded = (manifest.get("source") or {}).get("data_root")
    if recorded:
        root = Path(recorded)
    else:
        try:
            root = get_dataset(dataset).default_root(workspace or Workspace.resolve())
        except (KeyError, ValueError):
            return dataset, None
    return dataset, root if root.is_dir() else None


@lru_cache(maxsize=4)
def _utterances(dataset: str, root: Path) -> dict[str, Utterance]:
    adapter = get_dataset(dataset)
    adapter.configure({}, root)
    return {u.id: u for u in adapter.read(root) if u.dropped is None}


def find_utterance(cache: Path, item_id: str, workspace: Workspace | None = None) -> Utterance | None:
    """The utterance (with its ``video``/``audio`` media) of a cached item, or None (logged why)."""
    dataset, root = data_root(cache, workspace)
    if root is None:
        log.info("the raw %s data of cache %s is not at hand; rows are shown by index", dataset, cache)
        return None
    try:
        found = _utterances(dataset, root.resolve()).get(item_id)
    except Exception as error:  # a changed or damaged corpus must not stop the explanation  # noqa: BLE001
        log.info("cannot read %s at %s again (%s); rows are shown by index", dataset, root, error)
        return None
    if found is None:
        log.info("%s at %s no longer holds item %s; rows are shown by index", dataset, root, item_id)
    return found


@dataclass
class RowMedia:
    """When each video and audio row of an item happens, in seconds from the clip's start, and
    small frame pictures (what ``hcm explain`` draws beside the plans, as the paper's Figure 5)."""

    duration: float
    frame_times: list[float] = field(default_factory=list)  # the sampled frames' timestamps
    segment_times: list[tuple[float, float]] = field(default_factory=list)  # each audio segment's [start, end]
    thumbnails: np.ndarray | None = None  # (T, h, w, 3) uint8, the sampled frames made small

    def to_json(self) -> dict[str, Any]:
        return {"duration": self.duration, "frame_times": self.frame_times,
                "segment_times": [list(pair) for pair in self.segment_times]}


def row_media(video: MediaRef | None, audio: MediaRef | None, sampling: Sampling,
              thumbnail_height: int = 48) -> RowMedia | None:
    """The timing of an item's rows as stage one sampled them (``sampling``: the cache recipe's),
    or None when the media cannot be read now (logged)."""
    try:
        media = RowMedia(duration=0.0)
        if video is not None:
            start, end = clip_window(video)
            media.duration = end - start
            media.frame_times = [round(float(t) - start, 3) for t in frame_targets(start, end, sampling.frames)]
            frames = read_frames(video, sampling.frames)  # (T, H, W, 3)
            step = max(1, frames.shape[1] // thumbnail_height)
            media.thumbnails = np.ascontiguousarray(frames[:, ::step, ::step])
        if audio is not None:
            wave = read_audio(audio, sampling.audio_rate)  # (n,)
            starts, length = segment_bounds(wave.size, sampling.audio_rate, sampling.segments, sampling.segment_seconds)
            rate = float(sampling.audio_rate)
            media.segment_times = [(round(s / rate, 3), round((s + length) / rate, 3)) for s in starts.tolist()]
            media.duration = max(media.duration, wave.size / rate)
        return media
    except (MediaError, OSError) as error:
        log.info("cannot read the media again (%s); rows are shown by index", error)
        return None
