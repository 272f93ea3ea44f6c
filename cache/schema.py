"""The records a feature cache holds: feature specs, items, failures and the cache-wide metadata.

These dataclasses are the vocabulary shared by the extractor (which fills them), the shard
writer and reader, and the manifest. ``CacheMeta.recipe_hash`` fingerprints everything that
decides what the numbers in a cache mean, so a resumed extraction can refuse to mix recipes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcm.core.errors import HcmError
from hcm.core.names import CLASSIFICATION, TASKS

SCHEMA_VERSION = 2  # 2: shards and manifest list masked modalities; failures carry split and detail
# What `hcm extract` puts into the streams, as a number (stored as recipe["profile"]["recipe_version"]);
# bumped whenever the same settings give other features. 2: tiny encoders' BatchNorm statistics
# calibrated on seeded noise; 3: tiny BPE trained on the smaller sentiment lexicon of the sample
# corpora; 4: audio segments grow with the clip so that they overlap and cover all of it, a missing
# or undecodable clip masks its modalities instead of dropping the item, and every rejected
# annotation row is a plan position; 5: the profile recipe holds each encoder's settings under
# its name (``encoders``) and ``weights`` identifies every weight file by content per encoder.
RECIPE_VERSION = 5
DEFAULT_FLOAT_DTYPE = "float16"


class CacheError(HcmError):
    """A cache is missing, damaged or inconsistent; the message says which file and what to do."""


class RecipeMismatch(CacheError):
    """An extraction would add features of other settings (recipe, dataset, shard size) to a cache."""


def _json_default(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, paths and tuples found in recipes and labels."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be stored as JSON")


def to_json(value: Any, canonical: bool = False) -> str:
    """``value`` as JSON; ``canonical`` sorts keys and drops spaces so equal values hash equally."""
    try:
        if canonical:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CacheError(f"cannot store {value!r:.200} as JSON: {exc}") from exc


@dataclass
class FeatureSpec:
    """One feature stream: rows of ``shape`` stacked along a variable first axis.

    Args:
        name: stream name, e.g. ``roberta`` (see docs/architecture.md).
        shape: trailing shape after the ragged axis, ``()`` for a 1-D stream.
        dtype: numpy dtype name as stored, e.g. ``float16``, ``int32``, ``uint8``.
        encoder: name of the encoder that produced the stream.
        weights: identifier of the encoder weights (checkpoint name or file hash).
        config: encoder configuration, stored as JSON.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = DEFAULT_FLOAT_DTYPE
    encoder: str = ""
    weights: str = ""
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        if not self.name or "/" in self.name:
            raise CacheError(f"feature name {self.name!r} must be non-empty and contain no '/'")
        if any(d < 1 for d in self.shape):
            raise CacheError(f"feature {self.name!r}: trailing shape {self.shape} has a dimension < 1")
        try:
            kind = np.dtype(self.dtype).kind
        except TypeError as exc:
            raise CacheError(f"feature {self.name!r}: unknown dtype {self.dtype!r}") from exc
        if kind not in "biuf":
            raise CacheError(f"feature {self.name!r}: dtype {self.dtype!r} is not bool/int/float")
        self.dtype = np.dtype(self.dtype).name

    @property
    def dim(self) -> int:
        """Size of one row (product of the trailing shape; 1 for a 1-D stream)."""
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        return cls(
            name=data["name"], shape=tuple(data["shape"]), dtype=data["dtype"],
            encoder=data.get("encoder", ""), weights=data.get("weights", ""),
            config=dict(data.get("config", {})),
        )


@dataclass
class Item:
    """One utterance with its labels and feature streams (fields: docs/architecture.md)."""

    id: str
    split: str
    label: float | int
    labels: dict = field(default_factory=dict)
    text: str = ""
    group: str = ""
    position: int = 0
    features: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Failure:
    """A planned item that was dropped, and why.

    Args:
        id: the item's id (``<file>:<line>`` for an annotation row without a usable id).
        reason: a short category that counts can group by, e.g. ``invalid label``.
        split: the item's split (``""`` when the row does not say).
        detail: the specifics: file, line, value, decoder message.
    """

    id: str
    reason: str
    split: str = ""
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Masked:
    """One modality of a kept item that has no data, and why (its streams have 0 rows).

    Args:
        id: the item's id.
        split: the item's split.
        modality: ``text``, ``video`` or ``audio``.
        reason: a short category, e.g. ``file missing``, ``no audio stream``, ``empty transcript``.
        detail: the specifics (path, decoder message).
    """

    id: str
    split: str
    modality: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CacheMeta:
    """What a whole cache holds and how it was made.

    Args:
        dataset: dataset name (``mosei``, ``meld``, ``iemocap``).
        profile: extraction profile name (``paper``, ``tiny``, ...).
        task: ``regression`` or ``classification``.
        classes: class names in label-index order, ``None`` for regression.
        recipe: the full extraction recipe (encoders, sampling, windows, ...), JSON-able.
        features: the feature streams every item carries.
        shard_size: planned items per shard.
    """

    dataset: str
    profile: str
    task: str
    classes: list[str] | None
    recipe: dict
    features: list[FeatureSpec]
    shard_size: int = 1000

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise CacheError(f"task {self.task!r} must be one of {TASKS}")
        if self.task == CLASSIFICATION and not self.classes:
            raise CacheError("a classification cache needs its class names (CacheMeta.classes)")
        if self.shard_size < 1:
            raise CacheError(f"shard_size {self.shard_size} must be at least 1")
        names = [spec.name for spec in self.features]
        if len(set(names)) != len(names):
            raise CacheError(f"feature names repeat: {names}")
        self.classes = list(self.classes) if self.classes is not None else None

    @property
    def recipe_hash(self) -> str:
        """sha256 of the canonical JSON of the recipe and the feature specs."""
        payload = {"recipe": self.recipe, "features": [spec.to_dict() for spec in self.features]}
        return hashlib.sha256(to_json(payload, canonical=True).encode()).hexdigest()

    @property
    def recipe_version(self) -> int | None:
        """The extraction recipe version; ``None`` for a cache not written by ``hcm extract``."""
        profile = self.recipe.get("profile")
        return profile.get("recipe_version") if isinstance(profile, dict) else None

    @property
    def specs(self) -> dict[str, FeatureSpec]:
        return {spec.name: spec for spec in self.features}

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "profile": self.profile, "task": self.task,
            "classes": self.classes, "recipe": self.recipe, "shard_size": self.shard_size,
            "features": [spec.to_dict() for spec in self.features],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CacheMeta":
        return cls(
            dataset=data["dataset"], profile=data["profile"], task=data["task"],
            classes=data.get("classes"), recipe=data.get("recipe", {}),
            features=[FeatureSpec.from_dict(f) for f in data["features"]],
            shard_size=int(data["shard_size"]),
        )

    def n_shards(self, n_planned: int) -> int:
        """Number of shards a plan of ``n_planned`` items is cut into."""
        return -(-n_planned // self.shard_size)

    def planned_in_shard(self, k: int, n_planned: int) -> int:
        """Plan positions shard ``k`` covers: ``[k*shard_size, (k+1)*shard_size)`` clipped to the plan."""
        return max(0, min(self.shard_size, n_planned - k * self.shard_size))


def recipe_precision(recipe: dict) -> str | None:
    """The precision the encoders of an ``hcm extract`` recipe ran in (``recipe["precision"]``:
    ``float32``, ``bfloat16`` or ``float16``); ``None`` for a cache ``hcm extract`` did not make
    (an import). A recipe written before the field existed reads as ``float32``, what those
    extractions ran on a CPU (on a GPU they ran float16 autocast without recording it)."""
    if not isinstance(recipe.get("profile"), dict):
        return None
    return recipe.get("precision", "float32")


def weight_changes(cached: dict, current: dict, labels: tuple[str, str] = ("in the cache", "now")) -> list[str]:
    """How the weights of two recipes differ, one line per weight of an encoder both use (empty:
    the same); ``labels`` say where each recipe comes from.

    ``recipe["weights"]`` maps each encoder to ``{weight name: content id}``.
    """
    old, new = cached.get("weights") or {}, current.get("weights") or {}
    lines = []
    for encoder in sorted(set(old) & set(new)):
        if old[encoder] != new[encoder]:
            names = sorted(set(old[encoder]) | set(new[encoder]))
            lines += [f"encoder {encoder!r}: {name} is {new[encoder].get(name, 'absent')} {labels[1]}, "
                      f"{old[encoder].get(name, 'absent')} {labels[0]}"
                      for name in names if old[encoder].get(name) != new[encoder].get(name)]
    return lines


def recipe_changes(cached: dict, current: dict, prefix: str = "") -> list[str]:
    """Each recipe setting whose value differs, as ``frames 4 -> 8`` (cached value first; nested
    settings by dotted name, e.g. ``profile.segments 3 -> 8``)."""
    lines = []
    for key in sorted(set(cached) | set(current), key=str):
        old, new = cached.get(key, "absent"), current.get(key, "absent")
        if isinstance(old, dict) and isinstance(new, dict):
            lines += recipe_changes(old, new, f"{prefix}{key}.")
        elif to_json(old, canonical=True) != to_json(new, canonical=True):  # a tuple equals its stored list
            lines.append(f"{prefix}{key} {_brief(old)} -> {_brief(new)}")
    return lines


def _brief(value: object, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


def check_recipe_version(meta: CacheMeta, directory: Path) -> None:
    """Refuse a cache extracted with another recipe version: its streams mean something else."""
    version = meta.recipe_version
    if version is None or version == RECIPE_VERSION:
        return
    raise CacheError(
        f"cache {directory} was extracted with recipe version {version} (hcm {meta.recipe.get('hcm_version')}); "
        f"this hcm reads and writes recipe version {RECIPE_VERSION}, whose features differ (see the recipe "
        f"versions in docs/cache.md). Re-extract it: delete {directory} and run `hcm extract` again, or "
        f"extract into another --out folder."
    )
