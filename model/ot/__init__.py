"""Entropic optimal transport for the composition-level distribution constraint (Eq. 11-12).

HCMNet transports each video/audio graph onto the text graph with an entropic Sinkhorn plan
``H`` (Eq. 11) and adds ``gamma * H^T G`` back onto the graph (Eq. 12). This package solves
that batched problem, differentiably, with interchangeable backends:

- ``torch``: batched dense log-domain iterations in one custom autograd function; a guarded
  scaling-domain fast path runs when the kernel ``exp(-C/eps)`` cannot underflow, on CPU as
  one compiled call per pass (``fused_cpu``, built on first use; ``HCM_FUSED_SINKHORN=0`` off).
- ``keops``: lazy KeOps reductions on point clouds; never materialises a (B, M, N) array
  except when a dense plan is asked for.
- ``pot``: POT's ``ot.bregman.sinkhorn_log`` per sample, the reference.

``backend="auto"`` asks :func:`choose_backend`. See docs/ot.md for the measured crossover.
"""

from hcm.model.ot.api import (
    PointCloudCost,
    SinkhornProblem,
    choose_backend,
    float32_island,
    sinkhorn,
    sinkhorn_transport,
)
from hcm.model.ot.registry import BACKENDS, register_backend

__all__ = [
    "BACKENDS",
    "PointCloudCost",
    "SinkhornProblem",
    "choose_backend",
    "float32_island",
    "register_backend",
    "sinkhorn",
    "sinkhorn_transport",
]
