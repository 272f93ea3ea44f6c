"""hcm.model.ot.problem's small parts: the log of a marginal with empty entries, the gradients
a Sinkhorn backward hands back for the marginals, and the checks and words of a point-cloud cost
(the solvers built on them are tested in test_ot.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from hcm.model.ot.problem import PointCloudCost, input_grads, safe_log


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_safe_log_is_minus_infinity_on_empty_entries_with_a_zero_gradient(dtype: torch.dtype) -> None:
    mass = torch.tensor([0.0, 0.25, 1.0], dtype=dtype, requires_grad=True)
    got = safe_log(mass)
    assert got[0].item() == -float("inf") and got[1:].tolist() == pytest.approx([-1.3862943611198906, 0.0])
    got[1:].sum().backward()
    assert mass.grad.tolist() == [0.0, 4.0, 1.0]


def test_marginal_gradients_are_zero_on_empty_entries() -> None:
    ctx = SimpleNamespace(needs_input_grad=(True, True, True, False, False))
    a, b = torch.tensor([[0.0, 0.5, 0.5]]), torch.tensor([[1.0, 0.0]])
    g_logk, g_a, g_b = torch.ones(1, 3, 2), torch.full((1, 3), 2.0), torch.full((1, 2), 3.0)
    out = input_grads(ctx, g_logk, g_a, g_b, a, b)
    assert out[0] is g_logk and out[3:] == (None, None)
    assert out[1].tolist() == [[0.0, 2.0, 2.0]] and out[2].tolist() == [[3.0, 0.0]]


@pytest.mark.parametrize("needs", [(True, True, False), (True, False, True), (False, False, False)])
def test_marginal_gradients_only_where_asked(needs: tuple[bool, bool, bool]) -> None:
    ctx = SimpleNamespace(needs_input_grad=(*needs, False, False))
    a, b = torch.ones(1, 2), torch.ones(1, 2)
    _, g_a, g_b, _, _ = input_grads(ctx, None, torch.ones(1, 2), torch.ones(1, 2), a, b)
    assert (g_a is not None) == needs[1] and (g_b is not None) == needs[2]


def refused(x: torch.Tensor, y: torch.Tensor, message: str, p: int = 2) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PointCloudCost(x, y, p)


def test_point_clouds_must_be_batches_of_points_of_one_dimension() -> None:
    shape_words = "point clouds must be (B, M, d) and (B, N, d) with the same B and d, got x {} and y {}"
    refused(torch.zeros(2, 3), torch.zeros(2, 4, 3), shape_words.format((2, 3), (2, 4, 3)))
    refused(torch.zeros(2, 4, 3), torch.zeros(2, 3), shape_words.format((2, 4, 3), (2, 3)))
    refused(torch.zeros(2, 4, 3), torch.zeros(3, 4, 3), shape_words.format((2, 4, 3), (3, 4, 3)))
    refused(torch.zeros(2, 4, 3), torch.zeros(2, 5, 2), "x has d=3 features but y has d=2")
    refused(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), "PointCloudCost.p must be 1 (Euclidean) or 2 (squared "
                                                        "Euclidean), got 3", p=3)
    assert PointCloudCost(torch.zeros(2, 4, 3), torch.zeros(2, 5, 3), 1).dense().shape == (2, 4, 5)
