"""The common base of stage one's encoders and their registry.

An encoder turns a batch of utterances into per-item feature arrays and declares, up front,
the streams it writes (name, trailing shape, dtype) so the cache can be laid out before any
clip is decoded. Work is split in two so that decoding can run in worker processes:

- a :class:`Preparer` is a small picklable object (configuration only, no model) that runs in
  a decoding worker and turns decoded media (frames or a waveform) into the encoder's input
  array, e.g. resized and cropped uint8 frames (the encoder normalises them pass by pass);
- the :class:`Encoder` itself holds the network and runs in the main process on batches.

Each encoder module declares everything hcm needs to know about its encoder on the class: the
settings dataclass (``settings_class``), the settings of the ``paper`` and ``tiny`` profiles
(``paper_settings``/``tiny_settings``; ``None`` leaves the encoder out of that profile) and the
weight files the settings need (``weight_specs``, see ``hcm.pipeline.weights``). The class
registers itself with :func:`register_encoder`; importing ``hcm.pipeline.encoders`` imports
every encoder module, so adding an encoder is one new module plus one import line there.
:func:`create_encoder` builds one from a profile (``hcm.pipeline.profiles``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, ContextManager, Hashable, Iterator, Sequence

import numpy as np
import torch

from hcm.cache.schema import FeatureSpec
from hcm.core.errors import UsageError
from hcm.core.names import MODALITIES
from hcm.core.registry import Registry
from hcm.pipeline.encoders import precision as precisions
from hcm.pipeline.weights import ResolvedWeights, WeightSpec

# Rows (frames, audio segments) per forward pass of a CNN encoder on the CPU. With 8 rows the
# activations stay in the caches: in bfloat16, CLIP RN50 and EfficientNet-b0 ran 1.5x and 1.6x
# faster per frame than with 128 rows per pass (ESResNeXt the same; benchmarks/RESULTS.md). The
# transformers (RoBERTa, CLIP text) are faster with whole batches, and GPUs take the whole batch.
CPU_ROWS_PER_FORWARD = 8


class EncoderError(UsageError):
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
    """One stage-one encoder: its declaration (settings, profiles, weights), declared output
    streams and a batched ``encode``."""

    name: ClassVar[str] = ""  # set by register_encoder
    # float32, bfloat16 or float16: set by create_encoder, which stores the weights of the
    # autocast_networks for it (see precision.py)
    precision: str = "float32"
    modality: ClassVar[str] = ""  # text, video or audio: which medium it reads
    settings_class: ClassVar[type] = object  # the settings dataclass stored in profiles and recipes
    shares_models: ClassVar[bool] = False  # from_profile takes shared= (SharedModels)

    @classmethod
    def paper_settings(cls) -> Any | None:
        """Its settings in the ``paper`` profile (``None``: not part of it)."""
        return None

    @classmethod
    def tiny_settings(cls) -> Any | None:
        """Its settings in the ``tiny`` profile (``None``: not part of it)."""
        return None

    @classmethod
    def weight_specs(cls, settings: Any) -> tuple[WeightSpec, ...]:
        """The weight files ``settings`` need (none for random or weightless encoders)."""
        return ()

    @classmethod
    @abstractmethod
    def from_profile(cls, profile: Any, weights: ResolvedWeights, device: torch.device | str) -> "Encoder":
        """Build the encoder with ``profile.settings[cls.name]`` and the resolved ``weights``.

        An encoder whose class sets ``shares_models`` is called with a keyword ``shared`` too (a
        :class:`SharedModels`) and takes the networks it has in common with other encoders from it.
        """

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

    def autocast_networks(self) -> list[torch.nn.Module]:
        """The networks that run wholly under :meth:`autocast`: in bfloat16 and float16 their linear,
        convolution and attention weights are stored in that dtype (``precision.store_autocast_weights``).
        None by default: an encoder that runs a part of its network outside autocast keeps its weights."""
        return []

    def autocast(self) -> ContextManager:
        """The context the encoder's ``precision`` runs in (``precision.autocast``)."""
        return precisions.autocast(self.precision, self.device)


class SharedModels:
    """The networks that several encoders of one extraction use, each built once.

    CLIP's image and text encoders are two halves of one model: building the encoders of a
    profile with one ``SharedModels`` gives both the same loaded CLIP, so its weights are read
    and held once. One instance belongs to one set of encoders (``build_encoders``); nothing
    is kept between extractions.
    """

    def __init__(self) -> None:
        self._models: dict[Hashable, torch.nn.Module] = {}

    def get(self, key: Hashable, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """The network stored under ``key``, built by ``build`` the first time it is asked for."""
        if key not in self._models:
            self._models[key] = build()
        return self._models[key]


ENCODERS: Registry[type[Encoder]] = Registry("encoder")


def register_encoder(name: str) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator: make an encoder buildable by ``create_encoder(name, ...)`` and part of
    the profiles its ``paper_settings``/``tiny_settings`` give."""

    def add(cls: type[Encoder]) -> type[Encoder]:
        if cls.modality not in MODALITIES:
            raise EncoderError(f"encoder {name!r} ({cls.__qualname__}) reads modality {cls.modality!r}; "
                               f"set its class attribute modality to one of {MODALITIES}")
        cls.name = name.lower()
        return ENCODERS.register(name)(cls)

    return add


def encoder_names() -> list[str]:
    """Registered encoder names (importing ``hcm.pipeline.encoders`` registers them all)."""
    return ENCODERS.names()


def encoder_classes() -> list[type[Encoder]]:
    """Every registered encoder in profile order: by modality (text, video, audio), then name."""
    classes = [ENCODERS.get(name) for name in ENCODERS.names()]
    return sorted(classes, key=lambda cls: (MODALITIES.index(cls.modality), cls.name))


def encoder_class(name: str) -> type[Encoder]:
    """The registered encoder ``name`` (any case); an unknown name lists the known ones."""
    return ENCODERS.get(name)


def create_encoder(name: str, profile: Any, weights: ResolvedWeights, device: torch.device | str,
                   precision: str = "float32", shared: SharedModels | None = None) -> Encoder:
    """Build the encoder ``name`` for ``profile`` with resolved ``weights`` on ``device``, running in
    ``precision`` (``float32``, ``bfloat16`` or ``float16``; ``precision.choose_precision`` resolves
    ``auto``; in bfloat16 and float16 the weights autocast casts anyway are stored in that dtype);
    encoders built with one ``shared`` share the networks they have in common."""
    if precision not in precisions.PRECISIONS:
        raise EncoderError(f"precision {precision!r} is not one of {precisions.PRECISIONS}")
    cls = encoder_class(name)
    if cls.shares_models:
        encoder = cls.from_profile(profile, weights, device, shared=shared or SharedModels())
    else:
        encoder = cls.from_profile(profile, weights, device)
    encoder.precision = precision
    for network in encoder.autocast_networks():
        precisions.store_autocast_weights(network, precision)
    return encoder


def weights_id(cls: type[Encoder], settings: Any, weights: ResolvedWeights, seed: int) -> str:
    """``FeatureSpec.weights`` of an encoder: the content ids of its weight files, or the seed of
    its random weights when ``settings`` need no file (tiny profile)."""
    specs = cls.weight_specs(settings)
    return weights.id_of(specs) if specs else f"tiny-random-seed{seed}"


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


def to_device(array: np.ndarray | torch.Tensor, device: torch.device,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """One batch's input on ``device``, in ``memory_format`` (``torch.channels_last`` for the CNNs).

    On CUDA the host array is copied into pinned memory and sent with a non-blocking copy, so
    the transfer overlaps the work already queued on the GPU (torch's pinned-memory cache
    reuses the buffers and keeps each alive until its copy is done). On the CPU a numpy array
    is used in place, without a copy, unless the layout changes.
    """
    tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.contiguous(memory_format=memory_format) if tensor.dim() == 4 else tensor


def forward_rows(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``forward`` over the rows of ``inputs``: on the CPU in passes of ``CPU_ROWS_PER_FORWARD`` rows
    (outputs concatenated in order), on a GPU in one pass."""
    if inputs.device.type != "cpu" or len(inputs) <= CPU_ROWS_PER_FORWARD:
        return forward(inputs)
    return torch.cat([forward(part) for part in inputs.split(CPU_ROWS_PER_FORWARD)])


def forward_arrays(forward: Callable[[torch.Tensor], torch.Tensor], arrays: Sequence[np.ndarray], device: torch.device,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """``forward`` over the rows of ``arrays`` (each ``(n_i, ...)``, one item's rows) taken as one batch:
    ``(sum n_i, ...)`` outputs in order.

    On a GPU the batch goes in one pass. On the CPU it goes in passes of ``CPU_ROWS_PER_FORWARD``
    rows, each pass gathered from the items' arrays and laid out in ``memory_format`` on its own,
    so the batch is never copied whole (a batch of 16 clips of 16 frames at 224 px is 154 MB in
    float32); the passes and their rows are those of :func:`forward_rows` on the whole batch.
    """
    if device.type != "cpu":
        return forward(to_device(np.concatenate(arrays), device, memory_format))
    return torch.cat([forward(to_device(rows, device, memory_format))
                      for rows in row_passes(arrays, CPU_ROWS_PER_FORWARD)])


def row_passes(arrays: Sequence[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The rows of ``arrays`` in order, in arrays of ``size`` rows (the last may hold fewer)."""
    pending: list[np.ndarray] = []
    count = 0
    for array in arrays:
        start = 0
        while start < len(array):
            take = min(size - count, len(array) - start)
            pending.append(array[start:start + take])
            count, start = count + take, start + take
            if count == size:
                yield np.concatenate(pending)
                pending, count = [], 0
    if pending:
        yield np.concatenate(pending)


def to_float16(array: torch.Tensor) -> np.ndarray:
    """A float tensor (any device, any float dtype) as a float16 numpy array (the cache's float
    dtype): one device-to-host copy, of the whole batch."""
    array = array.detach()
    if array.device.type != "cpu":
        return array.to(torch.float16).cpu().numpy()  # converted on the device: half the bytes to copy
    return array.float().numpy().astype(np.float16)
