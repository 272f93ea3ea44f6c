"""The paper encoders' networks alone on the inputs of batches an extraction encoded, at their best.

``bench_extract.py paper`` records every batch each encoder received during the extraction
(its utterances and the decoding workers' prepared arrays). :func:`best_seconds` then makes
each batch's network input ahead of time (normalised channels-last frames, the segments of
each length, token rows padded once) and times the network's forward on it alone, the way
each runs fastest on the CPU (the CNNs in passes of ``CPU_ROWS_PER_FORWARD`` rows, the
transformers on the whole batch), best of ``repeats`` runs, in the encoder's precision and
with the torch threads the extraction gave it. Everything else the pipeline does (decoding,
tokenising, parsing, host copies, writing shards) is left out: the sum is what the encoders
alone cost for those clips.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch


def _pixels(prepared: Sequence[np.ndarray], normalize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The batch's frames as one normalised channels-last float32 tensor (sum T, 3, S, S)."""
    return normalize(torch.from_numpy(np.concatenate(prepared))).contiguous(memory_format=torch.channels_last)


def network_call(encoder: Any, utterances: Sequence[Any], prepared: Sequence[Any]) -> Callable[[], Any] | None:
    """The encoder's network on this batch's inputs made beforehand (``None``: no network, e.g. mel)."""
    from hcm.pipeline.encoders.base import forward_rows
    from hcm.pipeline.encoders.clip import normalize_pixels
    from hcm.pipeline.encoders.efficientnet import imagenet_normalize
    from hcm.pipeline.encoders.text import text_window

    model = getattr(encoder, "model", None)
    if encoder.name == "clip_image":
        pixels = _pixels(prepared, normalize_pixels)
        return lambda: forward_rows(model.encode_image, pixels)
    if encoder.name == "efficientnet":
        pixels = _pixels(prepared, imagenet_normalize)
        return lambda: forward_rows(model.extract_features, pixels)
    if encoder.name == "esresnext":
        lengths = sorted({p.shape[1] for p in prepared})
        groups = [torch.from_numpy(np.concatenate([p for p in prepared if p.shape[1] == n])) for n in lengths]
        return lambda: [forward_rows(model, group) for group in groups]  # each (rows of that length, D)
    if encoder.name == "clip_text":
        tokens = torch.as_tensor(encoder.tokenizer([(u.text or "").strip() for u in utterances]))  # (B, 77)
        return lambda: model.encode_text(tokens)
    if encoder.name == "roberta":
        settings = encoder.settings
        windows = [text_window(encoder.tokenizer, u, settings.context, settings.max_length).input_ids
                   for u in utterances]
        ids = torch.full((len(windows), max(map(len, windows))), encoder.tokenizer.pad_token_id)  # (B, n)
        for row, window in enumerate(windows):
            ids[row, :len(window)] = torch.from_numpy(window)
        mask = (ids != encoder.tokenizer.pad_token_id).long()  # (B, n)
        return lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state
    return None


def best_seconds(encoders: dict[str, Any], batches: dict[str, list[tuple[Any, Any]]],
                 repeats: int = 2) -> tuple[dict[str, float], dict[str, float]]:
    """Per encoder: the sums over its recorded batches of the best wall seconds and the best CPU
    seconds (this process, all threads) of ``repeats`` forward passes."""
    from hcm.pipeline.decoding import inference_threads

    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, encoder in encoders.items():
        wall[name] = cpu[name] = 0.0
        for utterances, prepared in batches.get(name, []):
            call = network_call(encoder, utterances, prepared)
            if call is None:
                continue
            with inference_threads(encoder.device), torch.inference_mode(), encoder.autocast():
                best, best_cpu = float("inf"), float("inf")
                for _ in range(repeats):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    call()
                    best = min(best, time.perf_counter() - started)
                    best_cpu = min(best_cpu, time.process_time() - started_cpu)
            wall[name] += best
            cpu[name] += best_cpu
    return wall, cpu
