"""The ``pot`` backend: POT's log-domain Sinkhorn, one sample at a time (the reference).

Each sample is solved by ``ot.bregman.sinkhorn_log`` on torch tensors, so gradients come from
POT's torch backend. Nodes with zero mass are cut out before the call (they carry no mass and
do not change the other entries), which keeps ``log(0)`` out of POT; the plan is zero there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hcm.model.ot.problem import SinkhornProblem
from hcm.model.ot.registry import SinkhornBackend, register_backend


def pot_sinkhorn_log(cost: Tensor, a: Tensor, b: Tensor, eps: float, n_iters: int) -> Tensor:
    """One sample, exactly ``n_iters`` iterations (no early stop): (M, N) plan."""
    import ot  # POT; imported here so that hcm.model.ot imports without it

    return ot.bregman.sinkhorn_log(a, b, cost, reg=eps, numItermax=n_iters, stopThr=-1.0, warn=False)


@register_backend("pot")
class PotBackend(SinkhornBackend):
    """POT's ``sinkhorn_log`` per sample; slow, but the reference the others are tested against."""

    def plan(self, problem: SinkhornProblem) -> Tensor:
        cost = problem.dense_cost()  # (B, M, N)
        plans = []
        for c, a, b in zip(cost, problem.a, problem.b):
            rows, cols = (a > 0).nonzero().squeeze(1), (b > 0).nonzero().squeeze(1)
            sub = pot_sinkhorn_log(c[rows][:, cols], a[rows], b[cols], problem.eps, problem.n_iters)
            full = torch.zeros_like(c)  # (M, N)
            plans.append(full.index_put((rows[:, None], cols[None, :]), sub))
        return torch.stack(plans)  # (B, M, N)
