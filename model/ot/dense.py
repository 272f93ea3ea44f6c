"""The ``torch`` backend: batched dense Sinkhorn in custom autograd functions (Eq. 11).

Both paths run POT's update order (target potential, then source potential, starting from zero
potentials; zero-mass nodes start at -inf, so padding never enters any update) and return the
plan ``exp(logk + u + v)`` with ``logk = -C / eps``. Their backward
passes replay the iterations in reverse from per-iteration vectors saved in the forward pass,
so memory stays O(B*M*N + n_iters*B*(M+N)) instead of one dense autograd node per iteration.

- Scaling domain (fast path): ``alpha = a / (P beta)``, ``beta = b / (P^T alpha)`` with
  ``P = exp(logk - max logk)``; two batched mat-vecs per iteration. Its backward collects the
  rank-1 terms of every iteration and applies them with a single batched matmul. It is used
  only when the per-sample spread of ``logk`` is small enough that ``P`` cannot underflow, and
  its result is checked for non-finite values (then the log path runs instead).
- Log domain: logsumexp updates, safe for any ``eps``.

The loops are plain tensor functions run through ``cuda_graphs.run_loop``: on a GPU each is
captured once per shape and replayed as one CUDA graph instead of one launch per operation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hcm.model.capture import capturing
from hcm.model.ot.cuda_graphs import run_loop
from hcm.model.ot.fused_cpu import FusedScalingSinkhorn, use_fused
from hcm.model.ot.problem import SinkhornProblem, input_grads, safe_log
from hcm.model.ot.registry import SinkhornBackend, register_backend

# Largest per-sample spread max(logk) - min(logk) for which the scaling path runs; beyond it
# exp() of the kernel and of the scalings may leave the dtype's normal range.
SCALING_MAX_SPREAD = {torch.float64: 200.0, torch.float32: 20.0}


def all_finite(tensor: Tensor) -> bool:
    """No inf or NaN in ``tensor``: one reduction (NaN and inf survive a sum; only a sum beyond the
    dtype's range, from values no cost or plan should hold, reads as non-finite)."""
    return bool(torch.isfinite(tensor.detach().sum()))


def _matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    """Batched ``matrix @ vector``: (B, M, N), (B, N) -> (B, M)."""
    return torch.bmm(matrix, vector.unsqueeze(-1)).squeeze(-1)


def _scaling_forward(kern: Tensor, a: Tensor, b: Tensor, *, n_iters: int) -> tuple[Tensor, ...]:
    """The scaling iterations on ``kern`` (B, M, N): (kern_t, plan, alphas, betas, den_us, den_vs)."""
    kern_t = kern.transpose(1, 2).contiguous()  # (B, N, M), contiguous for fast mat-vecs
    alpha = (a > 0).to(a.dtype)  # (B, M); zero-mass rows start (and stay) at 0
    alphas, betas, den_us, den_vs = [alpha], [], [], []
    for _ in range(n_iters):
        den_v = _matvec(kern_t, alpha)  # (B, N)
        beta = b / den_v
        den_u = _matvec(kern, beta)  # (B, M)
        alpha = a / den_u
        alphas.append(alpha), betas.append(beta), den_us.append(den_u), den_vs.append(den_v)
    plan = alpha[:, :, None] * kern * beta[:, None, :]  # (B, M, N)
    return (kern_t, plan, *(torch.stack(s) for s in (alphas, betas, den_us, den_vs)))  # stacks (n(+1), B, M|N)


def _scaling_backward(grad_plan: Tensor, kern: Tensor, kern_t: Tensor, plan: Tensor, a: Tensor, b: Tensor,
                      alphas: Tensor, betas: Tensor, den_us: Tensor, den_vs: Tensor, *,
                      grad_steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """The iterations of :func:`_scaling_forward` in reverse: (g_logk, g_a, g_b)."""
    n_iters = betas.shape[0]
    weighted = grad_plan * kern  # (B, M, N)
    g_alpha = _matvec(weighted, betas[-1])  # (B, M)
    g_beta_plan = torch.bmm(alphas[-1][:, None, :], weighted).squeeze(1)  # (B, N)
    g_a, g_b = torch.zeros_like(a), torch.zeros_like(b)
    rows, cols = [], []  # rank-1 terms of d loss / d kern: rows[k] (B, M) x cols[k] (B, N)
    for k in range(n_iters - 1, max(n_iters - grad_steps, 0) - 1, -1):
        g_a += g_alpha / den_us[k]
        g_den_u = -g_alpha * alphas[k + 1] / den_us[k]  # (B, M)
        rows.append(g_den_u), cols.append(betas[k])
        g_beta = _matvec(kern_t, g_den_u)  # (B, N)
        if k == n_iters - 1:
            g_beta += g_beta_plan
        g_b += g_beta / den_vs[k]
        g_den_v = -g_beta * betas[k] / den_vs[k]  # (B, N)
        rows.append(alphas[k]), cols.append(g_den_v)
        g_alpha = _matvec(kern, g_den_v)  # gradient for alphas[k]
    low_rank = torch.bmm(torch.stack(rows, dim=2), torch.stack(cols, dim=1))  # (B, M, N)
    return grad_plan * plan + low_rank.mul_(kern), g_a, g_b


class ScalingSinkhorn(torch.autograd.Function):
    """Scaling-domain Sinkhorn: (logk (B, M, N), a (B, M), b (B, N)) -> plan (B, M, N)."""

    @staticmethod
    def forward(ctx, logk: Tensor, a: Tensor, b: Tensor, n_iters: int, grad_steps: int) -> Tensor:
        kern = (logk - logk.amax(dim=(1, 2), keepdim=True)).exp_()  # (B, M, N), in (0, 1]
        kern_t, plan, *stacks = run_loop(_scaling_forward, (kern, a, b), n_iters=n_iters)
        ctx.save_for_backward(kern, kern_t, plan, a, b, *stacks)
        ctx.grad_steps = grad_steps
        return plan

    @staticmethod
    def backward(ctx, grad_plan: Tensor):
        a, b = ctx.saved_tensors[3:5]
        g_logk, g_a, g_b = run_loop(_scaling_backward, (grad_plan.contiguous(), *ctx.saved_tensors),
                                    grad_steps=ctx.grad_steps)
        return input_grads(ctx, g_logk, g_a, g_b, a, b)


def _log_forward(logk: Tensor, a: Tensor, b: Tensor, *, n_iters: int) -> tuple[Tensor, ...]:
    """Log-domain iterations: (plan, us, vs, lse_us, lse_vs)."""
    loga, logb = safe_log(a), safe_log(b)  # -inf on zero-mass (padded) nodes
    u = safe_log((a > 0).to(a.dtype))  # (B, M); 0, or -inf on zero-mass rows
    us, vs, lse_us, lse_vs = [u], [], [], []
    for _ in range(n_iters):
        lse_v = torch.logsumexp(logk + u[:, :, None], dim=1)  # (B, N)
        v = logb - lse_v
        lse_u = torch.logsumexp(logk + v[:, None, :], dim=2)  # (B, M)
        u = loga - lse_u
        us.append(u), vs.append(v), lse_us.append(lse_u), lse_vs.append(lse_v)
    plan = (logk + u[:, :, None] + v[:, None, :]).exp_()  # (B, M, N)
    return (plan, *(torch.stack(s) for s in (us, vs, lse_us, lse_vs)))


def _log_backward(grad_plan: Tensor, logk: Tensor, plan: Tensor, a: Tensor, b: Tensor, us: Tensor, vs: Tensor,
                  lse_us: Tensor, lse_vs: Tensor, *, grad_steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """The iterations of :func:`_log_forward` in reverse: (g_logk, g_a, g_b)."""
    n_iters = vs.shape[0]
    g_logk = grad_plan * plan  # (B, M, N)
    g_u, g_v_plan = g_logk.sum(2), g_logk.sum(1)  # (B, M), (B, N)
    g_loga, g_logb = torch.zeros_like(a), torch.zeros_like(b)
    for k in range(n_iters - 1, max(n_iters - grad_steps, 0) - 1, -1):
        soft_u = (logk + vs[k][:, None, :] - lse_us[k][:, :, None]).exp_()  # rows sum to 1
        g_loga += g_u
        g_logk.addcmul_(soft_u, g_u[:, :, None], value=-1)
        g_v = -torch.bmm(g_u[:, None, :], soft_u).squeeze(1)  # (B, N)
        if k == n_iters - 1:
            g_v += g_v_plan
        soft_v = (logk + us[k][:, :, None] - lse_vs[k][:, None, :]).exp_()  # columns sum to 1
        g_logb += g_v
        g_logk.addcmul_(soft_v, g_v[:, None, :], value=-1)
        g_u = -_matvec(soft_v, g_v)  # gradient for us[k]
    g_a = g_loga / a.clamp_min(torch.finfo(a.dtype).tiny)
    g_b = g_logb / b.clamp_min(torch.finfo(b.dtype).tiny)
    return g_logk, g_a, g_b


class LogSinkhorn(torch.autograd.Function):
    """Log-domain Sinkhorn: (logk (B, M, N), a (B, M), b (B, N)) -> plan (B, M, N)."""

    @staticmethod
    def forward(ctx, logk: Tensor, a: Tensor, b: Tensor, n_iters: int, grad_steps: int) -> Tensor:
        plan, *stacks = run_loop(_log_forward, (logk, a, b), n_iters=n_iters)
        ctx.save_for_backward(logk, plan, a, b, *stacks)
        ctx.grad_steps = grad_steps
        return plan

    @staticmethod
    def backward(ctx, grad_plan: Tensor):
        a, b = ctx.saved_tensors[2:4]
        g_logk, g_a, g_b = run_loop(_log_backward, (grad_plan.contiguous(), *ctx.saved_tensors),
                                    grad_steps=ctx.grad_steps)
        return input_grads(ctx, g_logk, g_a, g_b, a, b)


def scaling_is_safe(logk: Tensor) -> bool:
    """Whether the scaling path's kernel ``exp(logk - max)`` stays well inside the dtype's range."""
    limit = SCALING_MAX_SPREAD.get(logk.dtype)
    if limit is None or logk.numel() == 0:
        return False
    spread = (logk.amax(dim=(1, 2)) - logk.amin(dim=(1, 2))).max()
    return bool(spread <= limit)


def dense_plan(logk: Tensor, a: Tensor, b: Tensor, n_iters: int, grad: str) -> Tensor:
    """Plan (B, M, N) for ``logk = -C / eps``: the scaling path when safe, else the log path.

    Inside a graph capture the log path always: it is safe for every input, and the safety test
    and the finiteness check that follows the scaling path read values on the host."""
    grad_steps = 1 if grad == "last_step" else n_iters
    if not capturing() and scaling_is_safe(logk):
        scaling = FusedScalingSinkhorn if use_fused(logk, a, b) else ScalingSinkhorn
        plan = scaling.apply(logk, a, b, n_iters, grad_steps)
        if all_finite(plan):  # a plan sums to at most 1 per sample
            return plan
    return LogSinkhorn.apply(logk, a, b, n_iters, grad_steps)


@register_backend("torch")
class TorchBackend(SinkhornBackend):
    """Batched dense Sinkhorn; any device torch supports."""

    def plan(self, problem: SinkhornProblem) -> Tensor:
        logk = problem.dense_cost() / -problem.eps  # (B, M, N)
        return dense_plan(logk, problem.a, problem.b, problem.n_iters, problem.grad)
