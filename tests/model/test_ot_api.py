"""hcm.model.ot.api's checks and choices: the backend ``auto`` picks (and what it is told), the
words of each refusal, marginals converted to the cost's dtype, samples without mass, the
gradient mode kept for them, and ``sinkhorn_transport`` against the plan it stands for."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from hcm.model.ot import api
from hcm.model.ot.api import choose_backend, sinkhorn, sinkhorn_transport
from hcm.model.ot.problem import PointCloudCost


def clouds(batch: int = 2, m: int = 4, n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, m, 2, generator=generator), torch.randn(batch, n, 2, generator=generator)


def refused(message: str, call, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call(*args, **kwargs)


# ---------------------------------------------------------------------- choosing a backend

def test_keops_only_past_half_the_gpu_for_16_dense_copies() -> None:
    needed = 16 * 1 * 100 * 100 * 4  # one float32 problem, batch 1 by default
    assert choose_backend("cuda", 100, 100, device_bytes=2 * needed) == "torch"
    assert choose_backend("cuda", 100, 100, device_bytes=2 * needed - 1) == "keops"
    assert choose_backend("cuda", 100, 100, batch=2, itemsize=8, device_bytes=8 * needed) == "torch"
    assert choose_backend("cuda", 100, 100, batch=2, itemsize=8, device_bytes=8 * needed - 1) == "keops"
    assert choose_backend("cuda", 100, 100, point_cloud=False, device_bytes=1) == "torch"
    assert choose_backend("cpu", 10_000, 10_000, device_bytes=1) == "torch"


def test_the_gpus_memory_is_asked_of_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def properties(device: torch.device) -> SimpleNamespace:
        asked.append(device)
        return SimpleNamespace(total_memory=16 * 100 * 100 * 4)

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    assert choose_backend("cuda:1", 100, 100) == "keops"
    assert asked == [torch.device("cuda:1")]


@pytest.mark.parametrize("point_cloud", [True, False])
def test_auto_tells_the_chooser_the_problem(monkeypatch: pytest.MonkeyPatch, point_cloud: bool) -> None:
    told = []

    def chooser(device: torch.device, m: int, n: int, **kwargs: object) -> str:
        told.append((device, m, n, kwargs))
        return "torch"

    monkeypatch.setattr(api, "choose_backend", chooser)
    x, y = clouds(batch=3, m=5, n=2)
    cost = PointCloudCost(x, y) if point_cloud else PointCloudCost(x, y).dense()
    sinkhorn(cost, eps=0.5, n_iters=3)
    assert told == [(torch.device("cpu"), 5, 2, {"batch": 3, "itemsize": 4, "point_cloud": point_cloud})]


def test_pot_refuses_the_last_step_gradient() -> None:
    x, y = clouds()
    refused("the pot backend differentiates through every iteration only; use grad='unrolled'", sinkhorn,
            PointCloudCost(x, y).dense(), eps=0.5, n_iters=3, backend="pot", grad="last_step")


# ---------------------------------------------------------------------- checks and their words

def test_costs_that_are_not_batches_of_floats_are_named() -> None:
    refused("cost must be a (B, M, N) tensor or a PointCloudCost, got Tensor", sinkhorn, torch.ones(3, 4), eps=0.5,
            n_iters=3)
    refused("cost must be a floating-point tensor, got torch.int64", sinkhorn, torch.ones(1, 2, 2, dtype=torch.int64),
            eps=0.5, n_iters=3)
    refused("cost contains inf or NaN; give padded nodes a finite cost and zero mass instead", sinkhorn,
            torch.full((1, 2, 2), float("nan")), eps=0.5, n_iters=3)


def test_marginals_of_another_shape_sign_or_finiteness_are_named() -> None:
    cost = torch.ones(1, 2, 3)
    refused("marginal b must have shape (1, 3), got (1, 2)", sinkhorn, cost, None, torch.ones(1, 2), eps=0.5,
            n_iters=3)
    refused("marginal a must be finite and non-negative (zeros mark padded nodes)", sinkhorn, cost,
            torch.tensor([[1.0, -0.5]]), eps=0.5, n_iters=3)
    refused("marginal b must be finite and non-negative (zeros mark padded nodes)", sinkhorn, cost, None,
            torch.tensor([[1.0, float("inf"), 0.0]]), eps=0.5, n_iters=3)


def test_one_iteration_is_enough() -> None:
    plan = sinkhorn(torch.ones(1, 2, 2), eps=0.5, n_iters=1)
    assert torch.allclose(plan, torch.full((1, 2, 2), 0.25))


def test_marginals_take_the_costs_dtype() -> None:
    x, y = clouds()
    cost = PointCloudCost(x, y).dense()
    a64 = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    plan = sinkhorn(cost, a64, eps=0.5, n_iters=5)
    assert plan.dtype == torch.float32
    assert torch.equal(plan, sinkhorn(cost, a64.float(), eps=0.5, n_iters=5))


# ---------------------------------------------------------------------- samples without mass

def test_a_sample_without_target_mass_gets_a_zero_plan_and_the_others_theirs() -> None:
    x, y = clouds(batch=3)
    cost = PointCloudCost(x, y).dense()
    b = torch.ones(3, 3) / 3
    b[1] = 0.0
    plan = sinkhorn(cost, None, b, eps=0.5, n_iters=5)
    assert torch.count_nonzero(plan[1]) == 0
    alone = sinkhorn(cost[[0, 2]], eps=0.5, n_iters=5)
    assert torch.allclose(plan[[0, 2]], alone)


def test_the_last_step_gradient_is_kept_for_a_batch_with_an_empty_sample() -> None:
    x, y = clouds(batch=2, seed=3)
    cost = PointCloudCost(x, y).dense().requires_grad_()
    a = torch.ones(2, 4) / 4
    a[1] = 0.0
    sinkhorn(cost, a, eps=0.3, n_iters=8, grad="last_step")[0].square().sum().backward()
    with_empty = cost.grad[0].clone()
    alone = cost.detach()[:1].clone().requires_grad_()
    sinkhorn(alone, eps=0.3, n_iters=8, grad="last_step").square().sum().backward()
    assert torch.allclose(with_empty, alone.grad[0], atol=1e-6)
    unrolled = cost.detach()[:1].clone().requires_grad_()
    sinkhorn(unrolled, eps=0.3, n_iters=8).square().sum().backward()
    assert not torch.allclose(with_empty, unrolled.grad[0], atol=1e-6)  # the two modes differ here


# ---------------------------------------------------------------------- transport

@pytest.mark.parametrize("p", [1, 2])
def test_transport_is_the_plan_transposed_times_the_values(p: int) -> None:
    x, y = clouds(batch=2, m=4, n=3, seed=5)
    values = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(6))
    a = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.5, 0.0]])
    b = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    moved = sinkhorn_transport(x, y, values, a, b, eps=0.4, n_iters=6, p=p)
    plan = sinkhorn(PointCloudCost(x, y, p), a, b, eps=0.4, n_iters=6)
    assert torch.allclose(moved, plan.transpose(1, 2) @ values, atol=1e-6)


def test_transport_of_a_sample_without_mass_is_zero() -> None:
    x, y = clouds(batch=2)
    a = torch.ones(2, 4) / 4
    a[0] = 0.0
    moved = sinkhorn_transport(x, y, torch.ones(2, 4, 3), a, eps=0.5, n_iters=4)
    assert torch.count_nonzero(moved[0]) == 0 and bool(torch.isfinite(moved).all())
    assert torch.allclose(moved[1].sum(0), torch.ones(3))


def test_transport_values_must_be_a_batch_of_source_features() -> None:
    x, y = clouds(batch=2, m=4)
    refused("values must be (B, M, d_v) = (2, 4) + (d_v,), got (2, 4)", sinkhorn_transport, x, y,
            torch.ones(2, 4), eps=0.5, n_iters=3)
    refused("values must be (B, M, d_v) = (2, 4) + (d_v,), got (2, 3, 1)", sinkhorn_transport, x, y,
            torch.ones(2, 3, 1), eps=0.5, n_iters=3)
