"""Sinkhorn's iteration loops on CUDA as one graph replay instead of hundreds of kernel launches.

A training-size problem (B = 64, M = N = 50, 50 iterations) is a few hundred tiny kernels in
the forward pass and more in the backward; on a GPU each launch costs more than its arithmetic.
:func:`run_loop` captures a loop function once per input shape, dtype, device and setting into a
``torch.cuda.CUDAGraph`` and afterwards replays it: the inputs are copied into the graph's own
buffers, the graph runs, and its outputs are cloned (the next replay overwrites them). The
captured kernels are the eager ones, so the numbers are those of the eager loop.

Eager instead of a graph: on the CPU; when ``HCM_CUDA_GRAPHS=0`` or :func:`use_cuda_graphs` says so;
while autograd records (double backward); while the caller is itself capturing a graph, such as
``hcm.training.step``'s whole training step, or runs under its CPU stand-in (``hcm.model.capture``:
the ops then join the caller's graph); for problems over ``GRAPH_MAX_ELEMENTS`` entries per (B, M, N)
array, where launches no longer matter and a graph's private memory would; and, with one
warning, after a capture fails.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import Tensor

from hcm.model.capture import capturing

log = logging.getLogger(__name__)

MAX_GRAPHS = 64  # captured graphs kept (least recently used dropped); each holds its buffers
GRAPH_MAX_ELEMENTS = 1 << 22  # largest (B, M, N) array a graph is captured for (16 MiB in float32)

_graphs: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, tuple[Tensor, ...], tuple[Tensor, ...]]] = OrderedDict()
_state: dict[str, bool | None] = {"enabled": None, "failed": False}


def use_cuda_graphs(enabled: bool | None) -> None:
    """Switch graph replay on or off for this process (``None``: follow ``HCM_CUDA_GRAPHS``, default on)."""
    _state["enabled"] = enabled
    _graphs.clear()


def graphs_enabled() -> bool:
    """Whether :func:`run_loop` may capture graphs in this process."""
    if _state["failed"]:
        return False
    if _state["enabled"] is not None:
        return bool(_state["enabled"])
    return os.environ.get("HCM_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no", "off")


def _eager(inputs: tuple[Tensor, ...]) -> bool:
    first = inputs[0]
    return (not first.is_cuda or not graphs_enabled() or torch.is_grad_enabled()
            or first.numel() > GRAPH_MAX_ELEMENTS or capturing())


def _capture(fn: Callable[..., tuple[Tensor, ...]], inputs: tuple[Tensor, ...], settings: dict[str, Any]):
    static_in = tuple(t.clone(memory_format=torch.contiguous_format) for t in inputs)
    side = torch.cuda.Stream(inputs[0].device)
    side.wait_stream(torch.cuda.current_stream(inputs[0].device))
    with torch.cuda.stream(side):  # a warm-up run: library handles and workspaces exist before capture
        fn(*static_in, **settings)
    torch.cuda.current_stream(inputs[0].device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(*static_in, **settings)
    return graph, static_in, tuple(static_out)


def run_loop(fn: Callable[..., tuple[Tensor, ...]], inputs: tuple[Tensor, ...], **settings: Any) -> tuple[Tensor, ...]:
    """``fn(*inputs, **settings)``: a pure tensor function whose result depends only on the inputs'
    values and ``settings``; on CUDA through a captured graph (see the module docstring)."""
    if _eager(inputs):
        return fn(*inputs, **settings)
    key = (fn.__qualname__, tuple(sorted(settings.items())),
           tuple((tuple(t.shape), t.dtype, t.device) for t in inputs))
    entry = _graphs.get(key)
    if entry is None:
        try:
            entry = _capture(fn, inputs, settings)
        except RuntimeError as error:  # a capture the driver or an op refuses: run eagerly from now on
            _state["failed"] = True
            _graphs.clear()
            log.warning("CUDA graph capture of the Sinkhorn loop failed (%s); running it eagerly from now on",
                        str(error).splitlines()[0][:200])
            return fn(*inputs, **settings)
        _graphs[key] = entry
        while len(_graphs) > MAX_GRAPHS:
            _graphs.popitem(last=False)
    _graphs.move_to_end(key)
    graph, static_in, static_out = entry
    for buffer, value in zip(static_in, inputs):
        buffer.copy_(value)
    graph.replay()
    return tuple(t.clone() for t in static_out)
