"""A toy stage-one encoder, added the way every encoder is: this one module, registered when imported.

``toy`` embeds the bytes of the current utterance: row ``b`` of a ``(256, dim)`` table read from
the weight file ``toy-table.npy`` (found in ``--weights-dir``). It is part of the ``tiny``
profile only. Tests import this module to show that nothing else in hcm has to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hcm.cache.schema import FeatureSpec
from hcm.pipeline.encoders.base import Encoded, Encoder, register_encoder
from hcm.pipeline.weights import ResolvedWeights, WeightSpec

TABLE_FILE = "toy-table.npy"
TOY_WEIGHTS = WeightSpec("toy", "toy byte table", (TABLE_FILE,), url="https://example.invalid/" + TABLE_FILE)
MAX_BYTES = 32


@dataclass(frozen=True)
class ToySettings:
    """Args: dim: values per byte row."""

    dim: int = 4


def write_table(path: Path, seed: int, dim: int = 4) -> Path:
    """A random byte table in the weight file format the toy encoder reads."""
    np.save(path, np.random.default_rng(seed).normal(size=(256, dim)).astype(np.float32))
    return path


@register_encoder("toy")
class ToyEncoder(Encoder):
    """One row per byte of the current utterance (at most ``MAX_BYTES``)."""

    modality = "text"
    settings_class = ToySettings

    @classmethod
    def tiny_settings(cls) -> ToySettings:
        return ToySettings()

    @classmethod
    def weight_specs(cls, settings: ToySettings) -> tuple[WeightSpec, ...]:
        return (TOY_WEIGHTS,)

    def __init__(self, settings: ToySettings, table: np.ndarray, weights_id: str) -> None:
        super().__init__("cpu")
        self.settings, self.table, self.weights_id = settings, table, weights_id

    @classmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str) -> "ToyEncoder":
        settings: ToySettings = profile.settings[cls.name]
        table = np.load(weights.path(TOY_WEIGHTS.name))  # (256, dim)
        return cls(settings, table, weights.id_of(cls.weight_specs(settings)))

    @property
    def outputs(self) -> list[FeatureSpec]:
        dim = self.settings.dim
        return [FeatureSpec("toy", (dim,), "float16", self.name, self.weights_id, {"dim": dim})]

    def encode(self, utterances: Sequence[Any], prepared: Sequence[Any]) -> list[Encoded]:
        rows = [list(u.text.strip().encode()[:MAX_BYTES]) for u in utterances]
        return [Encoded({"toy": self.table[r].astype(np.float16)}) for r in rows]  # (n_bytes, dim)
