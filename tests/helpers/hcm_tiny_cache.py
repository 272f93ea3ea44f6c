"""Builds tiny synthetic feature caches (through CacheWriter) for the stage-two tests.

Labels depend on the features so a small model can learn them: the regression label is a
function of the mean of the current utterance's text tokens; classes are its tertiles.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from hcm.cache.schema import CacheMeta, FeatureSpec, Item
from hcm.cache.writer import CacheWriter

DIMS = {"roberta": 6, "clip_text": 4, "efficientnet": 5, "clip_image": 3, "esresnext": 4, "mel": 2}
STREAMS = {"text": ["roberta", "clip_text"], "video": ["efficientnet", "clip_image"], "audio": ["esresnext", "mel"]}
CLASSES = ["negative", "neutral", "positive"]


def specs() -> list[FeatureSpec]:
    out = [FeatureSpec(name, (dim,), "float16", encoder="random") for name, dim in DIMS.items()]
    out.append(FeatureSpec("roberta_current", (), "uint8"))
    out.append(FeatureSpec("text_edges", (2,), "int32"))
    return out


def make_item(i: int, split: str, rng: np.random.Generator, task: str) -> Item:
    before, n_cur, after = int(rng.integers(0, 3)), int(rng.integers(2, 6)), int(rng.integers(0, 3))
    n = before + n_cur + after
    roberta = rng.normal(size=(n, DIMS["roberta"]))
    current = np.zeros(n, dtype=np.uint8)
    current[before:before + n_cur] = 1
    edges = np.array([[before + j, before + j + 1] for j in range(n_cur - 1)], dtype=np.int32).reshape(-1, 2)
    frames, segments = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    score = float(np.clip(roberta[before:before + n_cur, 0].mean() * 2.5, -3, 3))
    label = round(score, 1) if task == "regression" else int(np.digitize(score, [-0.6, 0.6]))
    features = {
        "roberta": roberta, "roberta_current": current, "text_edges": edges,
        "clip_text": rng.normal(size=(1, DIMS["clip_text"])),
        "efficientnet": rng.normal(size=(frames, DIMS["efficientnet"])),
        "clip_image": rng.normal(size=(frames, DIMS["clip_image"])),
        "esresnext": rng.normal(size=(segments, DIMS["esresnext"])),
        "mel": rng.normal(size=(segments * 3, DIMS["mel"])),
    }
    return Item(id=f"clip{i:03d}", split=split, label=label, text="words " * n_cur, group=f"g{i // 4}",
                position=i % 4, features=features, masks={"text": True, "video": True, "audio": True})


def mask(item: Item, modality: str) -> None:
    """Mark ``modality`` of ``item`` absent, as extraction does for a missing or broken medium (0 rows)."""
    item.masks[modality] = False
    for name in STREAMS[modality]:
        item.features[name] = item.features[name][:0]


def build_cache(directory: Path, n: int = 48, task: str = "regression", dataset: str = "sample",
                profile: str = "tiny", seed: int = 0, masked: dict[str, list[str]] | None = None,
                recipe: dict | None = None) -> Path:
    """A cache of ``n`` items: 2/3 train, 1/6 valid, 1/6 test, in shards of 16.

    ``masked``: item id -> the modalities stored as absent for it (e.g. ``{"clip045": ["video"]}``);
    ``recipe``: settings recorded in the recipe beside ``synthetic: seed`` (e.g. ``weights``).
    """
    meta = CacheMeta(dataset=dataset, profile=profile, task=task,
                     classes=CLASSES if task == "classification" else None,
                     recipe={"synthetic": seed, **(recipe or {})}, features=specs(), shard_size=16)
    rng = np.random.default_rng(seed)
    splits = ["train"] * (n * 2 // 3) + ["valid"] * (n // 6)
    splits += ["test"] * (n - len(splits))
    items = [make_item(i, split, rng, task) for i, split in enumerate(splits)]
    for item in items:
        for modality in (masked or {}).get(item.id, []):
            mask(item, modality)
    writer = CacheWriter(directory, meta)
    for k in range(0, n, 16):
        writer.write_shard(k // 16, items[k:k + 16], [])
    writer.finalize(n)
    return directory


def plant_nan(cache: Path, item_id: str, stream: str = "roberta") -> None:
    """Overwrite every row of ``stream`` of ``item_id`` with NaN in its shard, as a damaged encoder
    output would be (the writer refuses NaN, so this edits the HDF5 file in place)."""
    for shard in sorted(cache.glob("*.h5")):
        with h5py.File(shard, "r+") as f:
            ids = list(f["items/id"].asstr()[()])
            if item_id in ids:
                row = ids.index(item_id)
                start, stop = f[f"features/{stream}/offsets"][row:row + 2]
                f[f"features/{stream}/data"][start:stop] = np.nan
                return
    raise KeyError(f"{item_id} is not in {cache}")
