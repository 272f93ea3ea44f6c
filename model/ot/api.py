"""Public entry points: :func:`sinkhorn`, :func:`sinkhorn_transport`, :func:`choose_backend`.

Both entry points are float32 islands under mixed precision: autocast is switched off inside
them and float16/bfloat16 inputs are raised to float32, so the cost, every Sinkhorn iteration
and the custom backward run in (at least) float32 whatever the caller's autocast setting. The
plan (or the transported values) comes back in float32; float64 inputs stay float64.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from hcm.model.capture import capturing
from hcm.model.ot import dense, keops_backend, pot_backend  # noqa: F401 - they register backends
from hcm.model.ot.dense import all_finite
from hcm.model.ot.problem import GRAD_MODES, PointCloudCost, SinkhornProblem
from hcm.model.ot.registry import get_backend

# Crossover for backend="auto" (docs/ot.md, benchmarks/RESULTS.md). On CPU dense torch beat KeOps
# at every size measured (M = N = 50 ... 10000), so KeOps is never chosen there. On an H100, dense
# torch solved every size measured (B = 1 up to M = N = 16384, B = 64 up to 1024) in at most about
# 0.1 s, with a peak of about DENSE_COPIES (B, M, N) arrays; so on CUDA KeOps is chosen for
# point-cloud costs only when that working set would take more than GPU_DENSE_SHARE of the device.
DENSE_COPIES = 16  # (B, M, N) arrays at the torch backend's peak (forward + backward, measured)
GPU_DENSE_SHARE = 0.5


def choose_backend(
    device: torch.device | str, m: int, n: int, *, batch: int = 1, itemsize: int = 4, point_cloud: bool = True,
    device_bytes: int | None = None,
) -> str:
    """The backend ``auto`` uses for a (batch, m, n) problem on ``device``.

    KeOps only applies to point-cloud costs; a dense cost tensor always goes to ``torch``.
    ``device_bytes``: the GPU's memory (default: asked from the device).
    """
    device = torch.device(device)
    if not point_cloud or device.type != "cuda":
        return "torch"
    if device_bytes is None:
        device_bytes = torch.cuda.get_device_properties(device).total_memory
    dense_bytes = DENSE_COPIES * batch * m * n * itemsize
    return "keops" if dense_bytes > GPU_DENSE_SHARE * device_bytes else "torch"


def _marginal(mass: Tensor | None, batch: int, size: int, like: Tensor, name: str) -> Tensor:
    """Validated (B, size) marginal; uniform when None."""
    if mass is None:
        return like.new_full((batch, size), 1.0 / size)
    if mass.shape != (batch, size):
        raise ValueError(f"marginal {name} must have shape {(batch, size)}, got {tuple(mass.shape)}")
    if not capturing() and (not bool(torch.isfinite(mass).all()) or bool((mass < 0).any())):
        raise ValueError(f"marginal {name} must be finite and non-negative (zeros mark padded nodes)")
    return mass.to(like.dtype)


def _problem(cost, a, b, eps: float, n_iters: int, grad: str) -> SinkhornProblem:
    """Check the inputs and bundle them; raises ValueError naming the bad value."""
    checked = not capturing()  # no host reads inside a graph capture (hcm.model.capture)
    if isinstance(cost, PointCloudCost):
        ref, (batch, m, n) = cost.x, (cost.x.shape[0], cost.x.shape[1], cost.y.shape[1])
        finite = not checked or (all_finite(cost.x) and all_finite(cost.y))
    elif isinstance(cost, Tensor) and cost.dim() == 3:
        ref, (batch, m, n) = cost, cost.shape
        finite = not checked or all_finite(cost)
    else:
        raise ValueError(f"cost must be a (B, M, N) tensor or a PointCloudCost, got {type(cost).__name__}")
    if not finite:
        raise ValueError("cost contains inf or NaN; give padded nodes a finite cost and zero mass instead")
    if not ref.is_floating_point():
        raise ValueError(f"cost must be a floating-point tensor, got {ref.dtype}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite float, got {eps!r}")
    if int(n_iters) != n_iters or n_iters < 1:
        raise ValueError(f"n_iters must be a positive integer, got {n_iters!r}")
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    a = _marginal(a, batch, m, ref, "a")
    b = _marginal(b, batch, n, ref, "b")
    return SinkhornProblem(cost, a, b, float(eps), int(n_iters), grad)


LOW_PRECISION = (torch.float16, torch.bfloat16)


def _full(tensor: Tensor | None) -> Tensor | None:
    """float16/bfloat16 -> float32; anything else unchanged."""
    return tensor.float() if tensor is not None and tensor.dtype in LOW_PRECISION else tensor


@contextmanager
def float32_island(device: torch.device) -> Iterator[None]:
    """Autocast off for ``device``'s type (CPU and CUDA autocast are separate switches): the block
    runs in the dtypes of its inputs, so float32 inputs give float32 arithmetic and gradients."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def _resolve(backend: str, problem: SinkhornProblem):
    if backend == "auto":
        batch, m, n = problem.shape
        ref = problem.a
        backend = choose_backend(
            ref.device, m, n, batch=batch, itemsize=ref.element_size(),
            point_cloud=isinstance(problem.cost, PointCloudCost),
        )
    if backend == "pot" and problem.grad != "unrolled":
        raise ValueError("the pot backend differentiates through every iteration only; use grad='unrolled'")
    return get_backend(backend)


def _without_empty(problem: SinkhornProblem) -> tuple[SinkhornProblem, Tensor | None]:
    """Give samples with an all-zero marginal uniform dummy marginals; their mask (B,) to zero them."""
    keep = (problem.a.sum(1) > 0) & (problem.b.sum(1) > 0)  # (B,)
    if not capturing() and bool(keep.all()):  # under capture the dummies are always made (no host read)
        return problem, None
    batch, m, n = problem.shape
    a = torch.where(keep[:, None], problem.a, 1.0 / m)
    b = torch.where(keep[:, None], problem.b, 1.0 / n)
    dummy = SinkhornProblem(problem.cost, a, b, problem.eps, problem.n_iters, problem.grad)
    return dummy, keep.to(problem.a.dtype)


def sinkhorn(
    cost: Tensor | PointCloudCost,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    eps: float,
    n_iters: int,
    backend: str = "auto",
    grad: str = "unrolled",
) -> Tensor:
    """Entropic OT plans for a batch, differentiable: (B, M, N).

    Args:
        cost: (B, M, N) cost tensor, or :class:`PointCloudCost` (needed by ``keops``).
        a: source marginals (B, M); None for uniform. Zeros mark padded nodes: their plan
            rows are exactly 0. A sample whose a or b is all zero gets an all-zero plan.
        b: target marginals (B, N); None for uniform.
        eps: entropic regularisation (POT's ``reg``), keyword-only.
        n_iters: Sinkhorn iterations (POT's order: target potential, then source), keyword-only.
        backend: "auto", "torch", "keops", "pot" or any registered name.
        grad: "unrolled" (exact) or "last_step" (cheaper and biased, see docs/ot.md).
    """
    device = cost.x.device if isinstance(cost, PointCloudCost) else cost.device
    with float32_island(device):
        if isinstance(cost, PointCloudCost):
            cost = PointCloudCost(_full(cost.x), _full(cost.y), cost.p)
        else:
            cost = _full(cost)
        problem = _problem(cost, _full(a), _full(b), eps, n_iters, grad)
        solver = _resolve(backend, problem)
        problem, keep = _without_empty(problem)
        plan = solver.plan(problem)
        return plan if keep is None else plan * keep[:, None, None]


def sinkhorn_transport(
    x: Tensor,
    y: Tensor,
    values: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    eps: float,
    n_iters: int,
    backend: str = "auto",
    p: int = 2,
    grad: str = "unrolled",
) -> Tensor:
    """``H^T values`` (Eq. 12) for the plan H between point clouds x and y, (B, N, d_v).

    Args:
        x: source points (B, M, d); y: target points (B, N, d).
        values: source-side features to transport, (B, M, d_v) (``G`` in Eq. 12).
        p: 2 for the squared Euclidean cost, 1 for the Euclidean cost.
        Other arguments as in :func:`sinkhorn`. With ``keops`` no (B, M, N) array is built.
    """
    with float32_island(x.device):
        problem = _problem(PointCloudCost(_full(x), _full(y), p), _full(a), _full(b), eps, n_iters, grad)
        if values.dim() != 3 or values.shape[:2] != x.shape[:2]:
            raise ValueError(f"values must be (B, M, d_v) = {tuple(x.shape[:2])} + (d_v,), got {tuple(values.shape)}")
        solver = _resolve(backend, problem)
        problem, keep = _without_empty(problem)
        moved = solver.transport(problem, _full(values))
        return moved if keep is None else moved * keep[:, None, None]
