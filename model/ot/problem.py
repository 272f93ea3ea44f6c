"""The batched entropic OT problem that every backend solves (Eq. 11 with entropy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

GRAD_MODES = ("unrolled", "last_step")


def safe_log(mass: Tensor) -> Tensor:
    """``log(mass)`` with ``-inf`` (and a zero gradient) where ``mass`` is 0."""
    positive = mass > 0
    return torch.where(positive, mass.clamp_min(torch.finfo(mass.dtype).tiny).log(), -torch.inf)


def input_grads(ctx, g_logk, g_a, g_b, a, b):
    """The gradients a Sinkhorn autograd function's ``backward`` returns, in the order of its
    ``forward(logk, a, b, n_iters, grad_steps)`` arguments: zero on zero-mass marginal entries."""
    g_a = torch.where(a > 0, g_a, 0) if ctx.needs_input_grad[1] else None
    g_b = torch.where(b > 0, g_b, 0) if ctx.needs_input_grad[2] else None
    return g_logk, g_a, g_b, None, None


class SquaredDistances(torch.autograd.Function):
    """``|x_i|^2 + |y_j|^2 - 2 x_i . y_j``: (x (B, M, d), y (B, N, d)) -> (B, M, N), unclamped.

    The backward is written out, ``d/dx = 2 (rowsum(G) x - G y)`` and ``d/dy = 2 (colsum(G) y - G^T x)``,
    one scaled copy and one in-place batched matmul each: autograd's version of the same
    expression makes about three times as many passes over the (B, M, d) and (B, N, d) arrays,
    which dominated a small problem's cost once the Sinkhorn iterations were fused. It is built
    from differentiable operations, so second derivatives still work.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:
        ctx.save_for_backward(x, y)
        norm_x = torch.linalg.vector_norm(x, dim=-1).square_()  # (B, M): one pass over x
        norm_y = torch.linalg.vector_norm(y, dim=-1).square_()  # (B, N)
        return torch.baddbmm(norm_x[:, :, None] + norm_y[:, None, :], x, y.transpose(1, 2), alpha=-2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y = ctx.saved_tensors
        g_x = g_y = None
        if ctx.needs_input_grad[0]:
            g_x = (x * (2 * grad.sum(2, keepdim=True))).baddbmm_(grad, y, alpha=-2)  # (B, M, d)
        if ctx.needs_input_grad[1]:
            g_y = (y * (2 * grad.sum(1)[:, :, None])).baddbmm_(grad.transpose(1, 2), x, alpha=-2)  # (B, N, d)
        return g_x, g_y


@dataclass(frozen=True)
class PointCloudCost:
    """A cost given by point clouds, so that lazy backends never build the (B, M, N) matrix.

    Attributes:
        x: source points, (B, M, d).
        y: target points, (B, N, d).
        p: 2 for the squared Euclidean cost ``|x - y|^2`` (POT's ``sqeuclidean``),
            1 for the Euclidean cost ``|x - y|`` (the paper's choice).
    """

    x: Tensor
    y: Tensor
    p: int = 2

    def __post_init__(self) -> None:
        if self.p not in (1, 2):
            raise ValueError(f"PointCloudCost.p must be 1 (Euclidean) or 2 (squared Euclidean), got {self.p}")
        if self.x.dim() != 3 or self.y.dim() != 3 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"point clouds must be (B, M, d) and (B, N, d) with the same B and d, "
                f"got x {tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )
        if self.x.shape[2] != self.y.shape[2]:
            raise ValueError(f"x has d={self.x.shape[2]} features but y has d={self.y.shape[2]}")

    def dense(self) -> Tensor:
        """The cost matrix, (B, M, N); the Euclidean root is clamped so its gradient stays finite."""
        sq = SquaredDistances.apply(self.x, self.y).clamp_min(0)  # (B, M, N)
        if self.p == 2:
            return sq
        return sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()


@dataclass(frozen=True)
class SinkhornProblem:
    """One validated batch: cost (dense or point clouds), marginals and solver settings.

    Attributes:
        cost: (B, M, N) tensor or :class:`PointCloudCost`.
        a: source marginals, (B, M), non-negative, each row with positive mass.
        b: target marginals, (B, N), likewise.
        eps: entropic regularisation (POT's ``reg``).
        n_iters: Sinkhorn iterations; one iteration updates the target then the source potential.
        grad: "unrolled" (exact derivative of the iterations) or "last_step" (see docs/ot.md).
    """

    cost: Tensor | PointCloudCost
    a: Tensor
    b: Tensor
    eps: float
    n_iters: int
    grad: str = "unrolled"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, M, N)."""
        return self.a.shape[0], self.a.shape[1], self.b.shape[1]

    def dense_cost(self) -> Tensor:
        """The cost as a (B, M, N) tensor, built from the point clouds when needed."""
        if isinstance(self.cost, PointCloudCost):
            return self.cost.dense()
        return self.cost
