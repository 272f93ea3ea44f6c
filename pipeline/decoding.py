"""Decoding utterances' media in worker processes, and the decoded utterances through the encoders.

A :class:`MediaDecoder` reads one utterance's media once (frames, audio at every sample rate
the encoders want) and runs each encoder's preparer on it; it is a picklable job for a pool of
decoding processes (:func:`decoding_pool`), and :func:`decode_stream` keeps a bounded number of
utterances in flight while the encoders run in the main process. A medium that cannot be used
masks the modalities it feeds (``Decoded.mask``) or fails the utterance (``Decoded.fail``).
:func:`encode_batch` turns a batch of decoded utterances into cache items.

Extraction (``hcm.pipeline.extract``), one clip (``hcm.pipeline.clip``) and the importers use
these.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from hcm.cache import Item
from hcm.core.names import MODALITIES
from hcm.pipeline.encoders.base import Encoder, Preparer
from hcm.pipeline.media import NO_AUDIO, NO_VIDEO, ZERO_LENGTH, MediaError, read_audio_rates, read_frames

MASKING_REASONS = (NO_VIDEO, NO_AUDIO, ZERO_LENGTH)  # masked even where unreadable media fail (one-clip predict)
PREFETCH_PER_WORKER = 4  # decoded clips in flight per worker, beyond one encoder batch
NO_SOURCE = "no source"
EMPTY_TRANSCRIPT = "empty transcript"
UNEXPECTED = "unexpected error"
NOTHING_USABLE = "no usable modality"


@dataclass
class Decoded:
    """One utterance after the decoding workers: prepared encoder inputs, masks, remarks.

    ``masked`` gives each masked modality's ``(reason, detail)``; ``failure`` (with its short
    ``failure_reason``) says why the utterance cannot be an item.
    """

    utterance: Any
    prepared: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    masked: dict[str, tuple[str, str]] = field(default_factory=dict)
    failure: str | None = None
    failure_reason: str = ""
    failure_detail: str = ""

    def mask(self, modality: str, reason: str, detail: str) -> None:
        """Mark ``modality`` absent for ``reason`` (``detail``: path, decoder message)."""
        self.masks[modality] = False
        self.masked[modality] = (reason, detail)
        self.notes[modality] = f"{reason}" + (f" ({detail})" if detail else "") + \
            f"; extracted with an empty {modality} mask"

    def fail(self, reason: str, detail: str) -> None:
        self.failure = f"{reason}: {detail}" if detail else reason
        self.failure_reason, self.failure_detail = reason, detail


@dataclass(frozen=True)
class MediaDecoder:
    """Picklable decoding job: reads an utterance's media once and runs every preparer on it.

    With ``keep_unreadable`` (extraction), a missing or undecodable medium masks the modalities it
    feeds and the utterance fails only when no modality is left; without it (one-clip prediction)
    such a medium fails the utterance. A row the reader rejected fails as it is.
    """

    n_frames: int
    preparers: tuple[tuple[str, Preparer], ...]
    keep_unreadable: bool = False

    def __call__(self, utterance: Any) -> Decoded:
        decoded = Decoded(utterance)
        dropped = getattr(utterance, "dropped", None)
        if dropped is not None:
            decoded.fail(*dropped)
            return decoded
        decoded.masks["text"] = True
        known = getattr(utterance, "masked", {})
        if "text" in known:
            decoded.mask("text", *known["text"])
        elif not (utterance.text or "").strip():
            decoded.mask("text", EMPTY_TRANSCRIPT, "")
        self._video(utterance, decoded)
        if decoded.failure is None:
            self._audio(utterance, decoded)
        if self.keep_unreadable and decoded.failure is None and not any(decoded.masks.get(m, True) for m in MODALITIES):
            decoded.fail(NOTHING_USABLE, "; ".join(f"{m}: {decoded.notes[m]}" for m in MODALITIES))
        return decoded

    def _video(self, utterance: Any, decoded: Decoded) -> None:
        wanted = [(name, p) for name, p in self.preparers if p.modality == "video"]
        if wanted:
            self._modality(utterance.video, "video", decoded, wanted, lambda ref: read_frames(ref, self.n_frames),
                           lambda frames, preparer: frames)

    def _audio(self, utterance: Any, decoded: Decoded) -> None:
        wanted = [(name, p) for name, p in self.preparers if p.modality == "audio"]
        if wanted:
            rates = tuple(dict.fromkeys(p.sample_rate for _, p in wanted))
            self._modality(utterance.audio, "audio", decoded, wanted, lambda ref: read_audio_rates(ref, rates),
                           lambda waves, preparer: waves[preparer.sample_rate])

    def _modality(self, ref: Any, modality: str, decoded: Decoded, wanted: list[tuple[str, Preparer]],
                  read: Any, media_for: Any) -> None:
        """Read ``ref`` and run each preparer on its media; a problem masks ``modality`` (or fails the item)."""
        if ref is None:
            decoded.mask(modality, NO_SOURCE, f"the dataset gives no {modality} file")
            return
        try:
            media = read(ref)
            prepared = {name: np.ascontiguousarray(preparer(media_for(media, preparer))) for name, preparer in wanted}
        except MediaError as err:
            if err.reason in MASKING_REASONS or self.keep_unreadable:
                specifics = err.reason[len(err.kind):].lstrip(": ")
                decoded.mask(modality, err.kind, ref.describe() + (
                    f": {specifics}" if specifics and specifics != str(ref.path) else ""))
            else:
                decoded.fail(err.kind, f"{modality} {ref.describe()}: {err.reason}")
            return
        except Exception as exc:  # a preparer bug or odd media must not stop the extraction
            detail = f"{type(exc).__name__} while decoding {ref.describe()}: {exc}"
            if self.keep_unreadable:
                decoded.mask(modality, UNEXPECTED, detail)
            else:
                decoded.fail(UNEXPECTED, detail)
            return
        decoded.masks[modality] = True
        decoded.prepared.update(prepared)  # stored C-contiguous (see ``Preparer``)


def _init_worker() -> None:
    """A decoding process uses one core: torch, OpenBLAS and OpenMP each default to one thread
    per core, and on a busy machine those threads wait on each other (decoding took twice as
    long here with them). Ctrl-C is the main process's to handle (it stops the pool): a worker
    ignores SIGINT instead of printing a KeyboardInterrupt traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    threadpool_limits(1)
    # What the preparers import on first use, imported here while the main process builds the
    # encoders: librosa's lazily loaded spectral module compiles numba kernels (a worker's first
    # clip took 1.3 s without this).
    from librosa.feature import melspectrogram  # noqa: F401
    from PIL import Image  # noqa: F401


@contextmanager
def inference_threads(device: torch.device) -> Iterator[None]:
    """On the CPU, inference takes the cores the default decoding workers leave (at least one).

    Decoding hides behind inference only when both have cores of their own; torch's default of
    one thread per core makes them take turns on the same cores. The count follows the machine,
    not ``--workers``: torch's CPU results change in the last bits with the thread count, and a
    cache must not depend on how many decoding processes made it.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    threads = max(1, min(previous, (os.cpu_count() or 1) - default_workers(device)))
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):  # numpy's BLAS (spaCy's parser) and OpenMP likewise
            yield
    finally:
        torch.set_num_threads(previous)


def decode_stream(decoder: MediaDecoder, utterances: Iterable[Any], pool: Any, prefetch: int) -> Iterator[Decoded]:
    """Decoded utterances in order; with a pool, at most ``prefetch`` are in flight or waiting."""
    if pool is None:
        yield from map(decoder, utterances)
        return
    source = iter(utterances)
    pending = deque(pool.apply_async(decoder, (u,)) for u in islice(source, prefetch))
    while pending:
        result = pending.popleft().get()
        pending.extend(pool.apply_async(decoder, (u,)) for u in islice(source, 1))
        yield result


def encode_batch(batch: Sequence[Decoded], encoders: Sequence[Encoder]) -> tuple[list[Item], float]:
    """Items of a batch of decoded utterances, and the seconds spent inside encoders."""
    items = [_new_item(d) for d in batch]
    spent = 0.0
    for encoder in encoders:
        present = [i for i, d in enumerate(batch) if d.masks.get(encoder.modality, True)]
        started = time.perf_counter()
        outputs = encoder.encode([batch[i].utterance for i in present],
                                 [batch[i].prepared.get(encoder.name) for i in present]) if present else []
        spent += time.perf_counter() - started
        for i, output in zip(present, outputs):
            items[i].features.update(output.features)
            items[i].notes.update(output.notes)
        for i in sorted(set(range(len(batch))) - set(present)):
            items[i].features.update(encoder.empty())
    return items, spent


def _new_item(decoded: Decoded) -> Item:
    u = decoded.utterance
    masks = {m: decoded.masks[m] for m in MODALITIES if m in decoded.masks}
    return Item(id=u.id, split=u.split, label=u.label, labels=dict(u.labels), text=u.text or "", group=u.group,
                position=u.position, masks=masks, notes={**getattr(u, "notes", {}), **decoded.notes})


def default_workers(device: torch.device) -> int:
    """Decoding processes when ``--workers`` is not given.

    On a GPU decoding is the CPU's only job: one process per spare core, at most 8. On the CPU
    the encoders need the cores too: a quarter of them decode (at least one).
    """
    cores = os.cpu_count() or 2
    if device.type == "cpu":
        return max(1, cores // 4)
    return max(1, min(8, cores - 1))


def decoding_pool(stack: ExitStack, workers: int) -> Any:
    """A decoding pool started before any model exists (forked children inherit no thread pools)."""
    if workers <= 0:
        return None
    method = "fork" if sys.platform == "linux" else "spawn"
    return stack.enter_context(multiprocessing.get_context(method).Pool(workers, initializer=_init_worker))

