"""The common base of stage one's encoders and their registry.

An encoder turns a batch of utterances into per-item feature arrays and declares, up front,
the streams it writes (name, trailing shape, dtype) so the cache can be laid out before any
clip is decoded. Work is split in two so that decoding can run in worker processes:

- a :class:`Preparer` is a small picklable object (configuration only, no model) that runs in
  a decoding worker and turns decoded media (frames or a waveform) into the encoder's input
  array, e.g. resized and normalised frames;
- the :class:`Encoder` itself holds the network and runs in the main process on batches.

Encoders register themselves with :func:`register_encoder` and are built by
:func:`create_encoder` from a profile (``hcm.pipeline.profiles``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, ContextManager, Iterator, Sequence

import numpy as np
import torch

from hcm.cache.schema import FeatureSpec
from hcm.core.names import MODALITIES



class EncoderError(Exception):
    """An encoder could not be built or run; the message says what and how to fix it."""


@dataclass
class Encoded:
    """One item's output of one encoder: its feature streams and any remarks (``Item.notes``)."""

    features: dict[str, np.ndarray]
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Preparer(ABC):
    """Per-item CPU preparation run inside a decoding worker (picklable: configuration only).

    ``modality`` is ``video`` (input: frames ``(T, H, W, 3)`` uint8) or ``audio`` (input: a mono
    waveform ``(n,)`` float32 in [-1, 1] at ``sample_rate``). The decoder stores every output
    C-contiguous, as a worker's pickled result is: torch picks its kernels by memory layout (a
    channels-last batch takes other convolution code, with other rounding), so the layout must
    not depend on where an item was prepared.
    """

    @property
    @abstractmethod
    def modality(self) -> str:
        ...

    @property
    def sample_rate(self) -> int | None:
        """The audio rate this preparer needs (``None`` for video)."""
        return None

    @abstractmethod
    def __call__(self, media: np.ndarray) -> np.ndarray:
        ...


class Encoder(ABC):
    """One stage-one encoder: declared output streams and a batched ``encode``."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    @property
    @abstractmethod
    def outputs(self) -> list[FeatureSpec]:
        """The streams this encoder writes for every item (rows may be 0 for a masked modality)."""

    @property
    def preparer(self) -> Preparer | None:
        """What the decoding workers run for this encoder (``None`` for text encoders)."""
        return None

    @abstractmethod
    def encode(self, utterances: Sequence[Any], prepared: Sequence[Any]) -> list[Encoded]:
        """Features of a batch: one :class:`Encoded` per item, in order.

        ``utterances`` are ``hcm.pipeline.datasets`` utterances; ``prepared`` holds what the
        preparer made for each item (``None`` entries for text encoders).
        """

    def empty(self) -> dict[str, np.ndarray]:
        """Zero-row arrays of every output stream, for an item whose modality is missing."""
        return {spec.name: np.zeros((0, *spec.shape), dtype=spec.dtype) for spec in self.outputs}

    def autocast(self) -> ContextManager:
        """Mixed precision on GPU (float16), plain float32 on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()


_ENCODERS: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator: make an encoder buildable by ``create_encoder(name, ...)``.

    The class must define ``from_profile(profile, weights, device) -> Encoder``.
    """

    def add(cls: type[Encoder]) -> type[Encoder]:
        if name in _ENCODERS:
            raise EncoderError(f"encoder {name!r} is registered twice ({_ENCODERS[name]} and {cls})")
        cls.name = name
        _ENCODERS[name] = cls
        return cls

    return add


def encoder_names() -> list[str]:
    """Registered encoder names (importing ``hcm.pipeline.encoders`` registers them all)."""
    return sorted(_ENCODERS)


def create_encoder(name: str, profile: Any, weights: Any, device: torch.device | str) -> Encoder:
    """Build the encoder ``name`` for ``profile`` with resolved ``weights`` on ``device``."""
    if name not in _ENCODERS:
        raise EncoderError(f"unknown encoder {name!r}; known: {', '.join(encoder_names())}")
    return _ENCODERS[name].from_profile(profile, weights, device)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded to ``seed``, restoring it afterwards.

    Tiny encoders are built inside it, so their random weights do not depend on build order.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def calibrate_batchnorm(model: torch.nn.Module, forward: Callable[[], Any]) -> torch.nn.Module:
    """Give a randomly initialised network eval-mode BatchNorm statistics of its own activations.

    Fresh BatchNorm layers hold mean 0 and variance 1, and in eval mode a random network's
    activations then shrink layer after layer (a random tiny EfficientNet ends near 1e-13, a
    random tiny CLIP image tower gives nearly the same vector for every frame). ``forward`` runs
    one train-mode pass (call it inside ``seeded``, on seeded noise) with cumulative averaging,
    so every layer's running statistics become those of that batch. Returns the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: exactly the calibration batch's statistics
    model.train()
    with torch.no_grad():
        forward()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.eval()


def to_float16(array: torch.Tensor) -> np.ndarray:
    """A float tensor as a float16 numpy array (the cache's float dtype)."""
    return array.detach().float().cpu().numpy().astype(np.float16)
