"""Tests for hcm.model.ot.dense, the torch backend's two Sinkhorn paths, each called directly: their
plans and gradients (unrolled and truncated) against plain autograd through the same iterations,
zero-mass nodes, a constant added to ``logk``, the scaling path's safety test at its limits, and
which path ``dense_plan`` takes."""

from __future__ import annotations

import pytest
import torch

from hcm.model.capture import sync_free
from hcm.model.ot import dense
from hcm.model.ot.dense import LogSinkhorn, ScalingSinkhorn, all_finite, dense_plan, scaling_is_safe

F64 = torch.float64
SOLVERS = [ScalingSinkhorn, LogSinkhorn]


def reference_plan(logk: torch.Tensor, a: torch.Tensor, b: torch.Tensor, n_iters: int,
                   grad_steps: int) -> torch.Tensor:
    """POT's update order written with plain autograd (positive marginals): the target potential,
    then the source potential, from zero potentials; the gradient flows through the last
    ``grad_steps`` iterations only (the potential before them is a constant)."""
    u = torch.zeros_like(a)
    v = torch.zeros_like(b)
    for step in range(n_iters):
        if step == n_iters - grad_steps:
            u = u.detach()
        v = b.log() - torch.logsumexp(logk + u[:, :, None], dim=1)
        u = a.log() - torch.logsumexp(logk + v[:, None, :], dim=2)
    return (logk + u[:, :, None] + v[:, None, :]).exp()


def problem(batch: int = 3, m: int = 5, n: int = 4, seed: int = 0, eps: float = 0.3, dtype=F64):
    """logk of a random cost, and positive marginals that sum to 1."""
    gen = torch.Generator().manual_seed(seed)
    logk = torch.rand(batch, m, n, generator=gen, dtype=F64) / -eps
    a = torch.rand(batch, m, generator=gen, dtype=F64) + 0.2
    b = torch.rand(batch, n, generator=gen, dtype=F64) + 0.2
    return logk.to(dtype), (a / a.sum(1, keepdim=True)).to(dtype), (b / b.sum(1, keepdim=True)).to(dtype)


def weights_for(logk: torch.Tensor) -> torch.Tensor:
    return torch.rand(logk.shape, generator=torch.Generator().manual_seed(7), dtype=logk.dtype) - 0.5


def grads(solver, logk, a, b, n_iters: int, grad_steps: int, weights=None):
    """The plan and d(sum(plan * w))/d(logk, a, b) for fixed weights w."""
    inputs = [t.clone().requires_grad_() for t in (logk, a, b)]
    plan = solver(*inputs, n_iters, grad_steps)
    weights = weights_for(logk) if weights is None else weights
    return [plan.detach(), *torch.autograd.grad((plan * weights).sum(), inputs)]


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("n_iters,grad_steps", [(6, 6), (6, 1), (6, 3), (1, 1), (5, 9)])
def test_plan_and_gradients_match_plain_autograd(solver, n_iters: int, grad_steps: int) -> None:
    logk, a, b = problem()
    got = grads(solver.apply, logk, a, b, n_iters, grad_steps)
    want = grads(reference_plan, logk, a, b, n_iters, min(grad_steps, n_iters))
    for name, g, w in zip(("plan", "logk", "a", "b"), got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_truncated_gradient_differs_from_the_unrolled_one(solver) -> None:
    logk, a, b = problem(seed=1)
    full, last = (grads(solver.apply, logk, a, b, 8, steps) for steps in (8, 1))
    torch.testing.assert_close(full[0], last[0], rtol=0, atol=0)  # the same plan
    assert not torch.allclose(full[1], last[1], rtol=1e-3, atol=0)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_gradients_of_a_single_input(solver) -> None:
    """Only the cost asks for a gradient: the marginals get none, and the cost's is the same."""
    logk, a, b = problem(seed=2)
    want = grads(solver.apply, logk, a, b, 5, 5)[1]
    cost = logk.clone().requires_grad_()
    plan = solver.apply(cost, a, b, 5, 5)
    (plan * weights_for(logk)).sum().backward()
    torch.testing.assert_close(cost.grad, want, rtol=1e-12, atol=0)
    assert a.grad is None and b.grad is None


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_zero_mass_nodes_get_exact_zeros(solver, dtype) -> None:
    """Padded source and target nodes: zero rows and columns in the plan, zero gradients for their
    marginals, and the other nodes solved as the problem without them."""
    logk, a, b = problem(batch=2, m=6, n=5, seed=3, dtype=dtype)
    a[0, 4:] = 0
    b[1, :2] = 0
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    plan, g_logk, g_a, g_b = grads(solver.apply, logk, a, b, 10, 10)
    assert (plan[0, 4:] == 0).all() and (plan[1, :, :2] == 0).all()
    assert (g_a[0, 4:] == 0).all() and (g_b[1, :2] == 0).all()
    assert torch.isfinite(g_logk).all() and torch.isfinite(g_a).all() and torch.isfinite(g_b).all()
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == F64 else dict(rtol=1e-4, atol=1e-6)
    for k, rows, cols in ((0, slice(0, 4), slice(None)), (1, slice(None), slice(2, None))):
        sub = [t.double()[k:k + 1].clone() for t in (logk[:, rows, cols], a[:, rows], b[:, cols])]
        want = grads(reference_plan, *sub, 10, 10, weights_for(logk).double()[k:k + 1, rows, cols])
        got = [plan[k:k + 1, rows, cols], g_logk[k:k + 1, rows, cols], g_a[k:k + 1, rows], g_b[k:k + 1, cols]]
        for g, w in zip(got, want):
            torch.testing.assert_close(g.double(), w, **tol)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("offset", [-900.0, 800.0])
def test_a_constant_added_to_logk_leaves_plan_and_gradients(solver, offset: float) -> None:
    """exp(logk) itself would under- or overflow float64 here; the plan only depends on differences."""
    logk, a, b = problem(seed=4)
    shifted = logk.clone()
    shifted[1] += offset  # one sample only: the shift is per sample
    want, got = grads(solver.apply, logk, a, b, 7, 7), grads(solver.apply, shifted, a, b, 7, 7)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype,limit", [(F64, 200.0), (torch.float32, 20.0)])
def test_scaling_is_safe_up_to_the_dtypes_spread(dtype, limit: float) -> None:
    logk = torch.zeros(3, 2, 2, dtype=dtype) - 50.0
    assert scaling_is_safe(logk)  # no spread, however far from 0
    logk[1, 0, 1] -= limit  # one sample spread exactly to the limit
    assert scaling_is_safe(logk)
    logk[1, 1, 0] += 0.5  # past it by less than 1 (an amount the dtype holds exactly)
    assert not scaling_is_safe(logk)
    spread_across = torch.zeros(2, 2, 2, dtype=dtype)
    spread_across[0] = 2 * limit  # each sample flat, the batch spread beyond the limit
    assert scaling_is_safe(spread_across - 10.0)


def test_scaling_is_unsafe_for_other_dtypes_and_empty_problems() -> None:
    assert not scaling_is_safe(torch.zeros(1, 2, 2, dtype=torch.float16))
    assert not scaling_is_safe(torch.zeros(1, 2, 2, dtype=torch.bfloat16))
    assert not scaling_is_safe(torch.zeros(2, 0, 3, dtype=F64))


def test_all_finite() -> None:
    assert all_finite(torch.tensor([1.0, -2.0, 0.0]))
    assert all_finite(torch.tensor([1.0, 2.0], requires_grad=True))
    for bad in (torch.inf, -torch.inf, torch.nan):
        assert not all_finite(torch.tensor([[1.0, bad], [0.0, 3.0]]))


class Spy:
    """Records the arguments of each ``apply`` of an autograd function and forwards them to it."""

    def __init__(self, solver, calls: list, result=None):
        self.solver, self.calls, self.result = solver, calls, result

    def apply(self, *args):
        self.calls.append((self.solver.__name__, args[3:]))
        return self.solver.apply(*args) if self.result is None else self.result(*args)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Which solver ``dense_plan`` calls, with its (n_iters, grad_steps), the fused path off."""
    record: list = []
    monkeypatch.setattr(dense, "use_fused", lambda *args: False)
    monkeypatch.setattr(dense, "ScalingSinkhorn", Spy(ScalingSinkhorn, record))
    monkeypatch.setattr(dense, "LogSinkhorn", Spy(LogSinkhorn, record))
    return record


@pytest.mark.parametrize("grad,steps", [("unrolled", 9), ("last_step", 1)])
def test_dense_plan_takes_the_scaling_path_when_safe(calls: list, grad: str, steps: int) -> None:
    logk, a, b = problem(seed=5)
    plan = dense_plan(logk, a, b, 9, grad)
    assert calls == [("ScalingSinkhorn", (9, steps))]
    torch.testing.assert_close(plan, reference_plan(logk, a, b, 9, 9), rtol=1e-9, atol=1e-12)


def test_dense_plan_takes_the_log_path_when_unsafe(calls: list) -> None:
    logk, a, b = problem(seed=6, eps=0.001)  # spread about 1000 > 200
    plan = dense_plan(logk, a, b, 4, "last_step")
    assert calls == [("LogSinkhorn", (4, 1))]
    torch.testing.assert_close(plan, reference_plan(logk, a, b, 4, 4), rtol=1e-9, atol=1e-12)


def test_dense_plan_takes_the_log_path_under_capture_rules(calls: list) -> None:
    logk, a, b = problem(seed=7)
    with sync_free():
        plan = dense_plan(logk, a, b, 5, "unrolled")
    assert calls == [("LogSinkhorn", (5, 5))]
    torch.testing.assert_close(plan, reference_plan(logk, a, b, 5, 5), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [torch.nan, torch.inf])
def test_dense_plan_falls_back_to_the_log_path_on_a_non_finite_plan(monkeypatch: pytest.MonkeyPatch,
                                                                     bad: float) -> None:
    record: list = []

    def broken(logk, *args):
        plan = torch.zeros_like(logk)
        plan[0, 0, 0] = bad
        return plan

    monkeypatch.setattr(dense, "use_fused", lambda *args: False)
    monkeypatch.setattr(dense, "ScalingSinkhorn", Spy(ScalingSinkhorn, record, broken))
    monkeypatch.setattr(dense, "LogSinkhorn", Spy(LogSinkhorn, record))
    logk, a, b = problem(seed=8)
    plan = dense_plan(logk, a, b, 6, "unrolled")
    assert record == [("ScalingSinkhorn", (6, 6)), ("LogSinkhorn", (6, 6))]
    torch.testing.assert_close(plan, reference_plan(logk, a, b, 6, 6), rtol=1e-9, atol=1e-12)


def test_dense_plan_asks_for_the_fused_path_with_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list = []
    record: list = []

    def fused(logk, a, b):
        asked.append((logk, a, b))
        return True

    monkeypatch.setattr(dense, "use_fused", fused)
    monkeypatch.setattr(dense, "FusedScalingSinkhorn", Spy(ScalingSinkhorn, record))
    monkeypatch.setattr(dense, "LogSinkhorn", Spy(LogSinkhorn, record))
    logk, a, b = problem(seed=9)
    dense_plan(logk, a, b, 3, "last_step")
    assert record == [("ScalingSinkhorn", (3, 1))]
    assert len(asked) == 1 and all(x is y for x, y in zip(asked[0], (logk, a, b)))


def test_torch_backend_divides_the_cost_by_minus_eps(calls: list) -> None:
    from hcm.model.ot import sinkhorn

    logk, a, b = problem(seed=10)
    cost = logk * -0.25
    plan = sinkhorn(cost, a, b, eps=0.25, n_iters=6, backend="torch")
    torch.testing.assert_close(plan, reference_plan(logk, a, b, 6, 6), rtol=1e-9, atol=1e-12)
    assert calls == [("ScalingSinkhorn", (6, 6))]
