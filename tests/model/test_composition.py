"""model/composition.py part by part (Eq. 11-15), on hand-computed tensors: the Euclidean cost and its
unit mean, which cost the transport hands to Eq. 15, the solver settings it passes on, the
attention scale of the shared-QK Eq. 13, the residuals and norms of hcm's PGF layers, and both
forms of the cost-guided fusion (the equations as written: tests/model/test_readings.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hcm.model.composition as composition
from hcm.model.composition import (
    CompositionTransport,
    CostGuidedFusion,
    FusionLayer,
    PairwiseGraphFusion,
    SharedQKAttention,
    euclidean_cost,
    unit_mean,
)
from hcm.model.layers import FeedForward, ModalRows

pytestmark = pytest.mark.usefixtures("one_thread")


def modal(x: list, real: list[bool]) -> ModalRows:
    """One sample: rows [CLS ; nodes] from lists, ``real`` marks the real nodes (after [CLS])."""
    nodes = torch.tensor([real])
    valid = torch.cat([torch.tensor([[True]]), nodes], dim=1)
    support = torch.cat([~nodes.any(1, keepdim=True), nodes], dim=1)
    return ModalRows(torch.tensor([x], dtype=torch.float32), valid, support, nodes.any(1))


def test_euclidean_cost_is_the_distance_with_a_finite_gradient_at_zero() -> None:
    x = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]], requires_grad=True)
    y = torch.tensor([[[0.0, 0.0], [6.0, 8.0], [3.0, 0.0]]])
    cost = euclidean_cost(x, y)
    assert torch.allclose(cost, torch.tensor([[[0.0, 10.0, 3.0], [5.0, 5.0, 4.0]]]), atol=1e-5)
    cost.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unit_mean_divides_by_the_mean_over_the_support_pairs() -> None:
    cost = torch.tensor([[[0.2, 0.6], [9.0, 9.0]]])
    pairs = torch.tensor([[[True, True], [False, False]]])
    assert torch.allclose(unit_mean(cost * pairs, pairs), torch.tensor([[[0.5, 1.5], [0.0, 0.0]]]))
    one = torch.tensor([[[0.5]]])  # a single pair, with a mean below 1
    assert torch.allclose(unit_mean(one, torch.tensor([[[True]]])), torch.tensor([[[1.0]]]))
    assert torch.equal(unit_mean(torch.zeros(1, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool)), torch.zeros(1, 1, 1))


def _unit_mean_cost(x: ModalRows, y: ModalRows) -> torch.Tensor:
    """Eq. 11's cost over the support pairs, divided by its mean over them, with torch.cdist."""
    pairs = x.support[0].unsqueeze(1) & y.support[0].unsqueeze(0)
    raw = torch.cdist(x.x[0], y.x[0]) * pairs
    return (raw / raw[pairs].mean()).unsqueeze(0)


def test_the_default_transport_is_text_anchored_and_moves_the_cost_onto_the_text_rows() -> None:
    gen = torch.Generator().manual_seed(4)
    text = modal(torch.randn(3, 2, generator=gen).tolist(), [True, True])  # N_t = 2
    video = modal(torch.randn(5, 2, generator=gen).tolist(), [True, True, True, False])  # N_v = 3, one padded
    transport = CompositionTransport(("video",), 0.5, use_ot=True, eps=0.5, n_iters=30, backend="torch")
    moved = transport({"text": text, "video": video})
    plan = moved.plans["video"]  # (1, 1+N_v, 1+N_t), mass 1/2 per text node
    bary = plan.transpose(1, 2) * torch.tensor([0.0, 2.0, 2.0])[None, :, None]  # diag(1/mu_t) H^T
    assert moved.transferred_cost.shape == (1, 3, 3)
    assert torch.allclose(moved.transferred_cost, bary @ _unit_mean_cost(video, text), atol=1e-5)
    assert torch.allclose(moved.graphs["video"], text.x + 0.5 * bary @ video.x, atol=1e-5)


def test_on_common_nodes_the_transferred_cost_is_c_m_itself() -> None:
    gen = torch.Generator().manual_seed(5)
    text = modal(torch.randn(4, 2, generator=gen).tolist(), [True, True, True])
    video = modal(torch.randn(4, 2, generator=gen).tolist(), [True, True, True])
    transport = CompositionTransport(("video",), 0.5, use_ot=True, eps=0.5, n_iters=30, backend="torch",
                                     update="literal", common_nodes=True)
    moved = transport({"text": text, "video": video})
    assert torch.allclose(moved.transferred_cost, _unit_mean_cost(video, text), atol=1e-5)


def test_the_transport_passes_its_solver_settings_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    solve = composition.sinkhorn

    def recording(cost, a, b, **kwargs):
        seen.update(kwargs)
        return solve(cost, a, b, **kwargs)

    monkeypatch.setattr(composition, "sinkhorn", recording)
    text = modal([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [True, True])
    video = modal([[0.0, 0.0], [2.0, 1.0], [1.0, 2.0]], [True, True])
    CompositionTransport(("video",), 0.5, use_ot=True, eps=0.3, n_iters=7, backend="pot")(
        {"text": text, "video": video})
    assert seen == {"eps": 0.3, "n_iters": 7, "backend": "pot"}


@pytest.mark.parametrize(("build", "message"), [
    (lambda: CompositionTransport(("video",), 0.5, True, 0.1, 5, "torch", update="literl"), "transport_update"),
    (lambda: CompositionTransport(("video",), 0.5, True, 0.1, 5, "torch", cost_scale="mean"), "cost_scale"),
    (lambda: CompositionTransport(("video",), 0.5, True, 0.1, 5, "torch", mass="nodes"), "mass"),
    (lambda: FusionLayer(2, 2, 1, 0.0, attention="shared"), "pgf_attention"),
    (lambda: FusionLayer(2, 2, 1, 0.0, ffn="gelu"), "pgf_ffn"),
    (lambda: PairwiseGraphFusion(1, 2, 1, 1, 0.0, attention="multi-head"), "pgf_attention"),
    (lambda: CostGuidedFusion("soft-max"), "cost_fusion"),
])
def test_an_unknown_switch_value_is_refused(build, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message} must be one of"):
        build()


def test_defaults_are_hcms_reading() -> None:
    transport = CompositionTransport(("video",), 0.5, True, 0.1, 5, "torch")
    assert (transport.update, transport.cost_scale, transport.node_mass, transport.common_nodes) == \
        ("text-anchored", "unit-mean", False, False)
    layer = FusionLayer(2, 2, 1, 0.0)
    assert layer.multihead and layer.residual_ffn and isinstance(layer.ffn, FeedForward)
    assert CostGuidedFusion().mode == "softmax"
    assert isinstance(PairwiseGraphFusion(1, 2, 1, 1, 0.0).norm_out, nn.LayerNorm)


def test_shared_qk_attention_scales_by_the_square_root_of_the_width() -> None:
    attention = SharedQKAttention(2, 2)
    with torch.no_grad():
        for linear in (attention.q, attention.v):
            linear.weight.copy_(torch.eye(2))
            linear.bias.zero_()
    guide = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]]])  # 3 nodes of width 2
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    support = torch.tensor([[True, True, False]])
    out = attention(guide, x, support)
    # row 0: scores (2, 2)/sqrt 2: equal weights; row 1: (2, 4)/sqrt 2 over the two real nodes
    w = 1 / (1 + math.exp(2 / math.sqrt(2)))
    expected = torch.tensor([[[0.5, 0.5], [w, 1 - w], [0.5, 0.5]]])
    assert torch.allclose(out, expected, atol=1e-6)


def _zero(linear: nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()


def _layer_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(1, 3, 4, generator=gen), torch.randn(1, 3, 4, generator=gen), torch.tensor([[True, True, True]])


def test_hcm_fusion_layer_adds_attention_and_feed_forward_to_its_input() -> None:
    torch.manual_seed(0)
    layer = FusionLayer(4, 4, num_heads=2, dropout=0.0).eval()
    guide, x, support = _layer_inputs()
    _zero(layer.ffn[-1])  # the feed-forward network adds nothing: out = x + attention
    attended = layer.attn(guide, guide, layer.norm_value(x), support)
    assert attended.abs().sum() > 0
    assert torch.allclose(layer(guide, x, support) - x, attended, atol=1e-6)
    torch.manual_seed(0)
    layer = FusionLayer(4, 4, num_heads=2, dropout=0.0).eval()
    _zero(layer.attn.out)  # the attention adds nothing: out = x + FFN(LayerNorm(x))
    fed = layer.ffn(layer.norm_ffn(x))
    assert fed.abs().sum() > 0
    assert torch.allclose(layer(guide, x, support) - x, fed, atol=1e-6)
    _zero(layer.ffn[-1])
    assert torch.allclose(layer(guide, x, support), x)  # both zero: the residuals pass x through


def test_the_paper_fusion_layer_replaces_its_input() -> None:
    layer = FusionLayer(4, 4, num_heads=1, dropout=0.0, attention="shared-qk", ffn="linear").eval()
    guide, x, support = _layer_inputs()
    _zero(layer.attn.v)
    assert torch.allclose(layer(guide, x, support), layer.ffn(torch.zeros_like(x)))  # nothing of x is kept


def test_hcm_fusion_normalises_the_guide_and_the_output() -> None:
    torch.manual_seed(1)
    fusion = PairwiseGraphFusion(2, 4, num_heads=2, layers=2, dropout=0.0).eval()
    gen = torch.Generator().manual_seed(3)
    guides = [torch.randn(1, 4, 4, generator=gen), torch.randn(1, 4, 4, generator=gen)]
    text = modal(torch.randn(4, 4, generator=gen).tolist(), [True, True, False])
    out = fusion(guides, text)
    real = out[0, :3]  # [CLS] and the real nodes; the padded row is zero
    assert torch.allclose(real.mean(-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(real.var(-1, unbiased=False), torch.ones(3), atol=1e-3)
    assert torch.equal(out[0, 3], torch.zeros(4))
    assert torch.allclose(fusion([7.0 * g for g in guides], text), out, atol=1e-4)  # the guide's scale is normed away
    paper = PairwiseGraphFusion(2, 4, num_heads=1, layers=1, dropout=0.0, attention="shared-qk", ffn="linear")
    assert not torch.allclose(paper([7.0 * g for g in guides], text), paper(guides, text), atol=1e-3)


@pytest.mark.parametrize(("attention", "ffn"), [("multihead", "gelu-residual"), ("shared-qk", "linear"),
                                                 ("multihead", "linear"), ("shared-qk", "gelu-residual")])
def test_each_fusion_layer_is_built_with_the_fusions_switches(attention: str, ffn: str) -> None:
    fusion = PairwiseGraphFusion(2, 4, num_heads=2, layers=2, dropout=0.0, attention=attention, ffn=ffn)
    guide, x, support = _layer_inputs()
    guide = torch.cat([guide, guide], dim=-1)
    for built in fusion.layers:
        alone = FusionLayer(8, 4, 2, 0.0, attention, ffn)
        alone.load_state_dict(built.state_dict())  # strict: the same parts
        assert torch.equal(alone(guide, x, support), built(guide, x, support))


def test_without_a_cost_the_fusion_keeps_p_u_on_the_support() -> None:
    p_u = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])  # 2 rows of width 3
    out = CostGuidedFusion("softmax")(p_u, None, torch.tensor([[False, True]]))
    assert torch.equal(out, torch.tensor([[[0.0, 0.0, 0.0], [4.0, 5.0, 6.0]]]))


def test_the_product_fusion_ignores_costs_outside_the_support() -> None:
    cost = torch.tensor([[[7.0, 7.0, 7.0], [7.0, 1.0, 2.0], [7.0, 3.0, 0.5]]])  # [CLS] row and column 7
    p_u = torch.tensor([[[9.0, 9.0], [1.0, -1.0], [2.0, 4.0]]])
    out = CostGuidedFusion("product")(p_u, cost, torch.tensor([[False, True, True]]))
    assert torch.allclose(out, torch.tensor([[[0.0, 0.0], [5.0, 7.0], [4.0, -1.0]]]))


def test_the_softmax_fusion_favours_the_cheaper_rows() -> None:
    fusion = CostGuidedFusion("softmax")
    cost = torch.tensor([[[0.0, 9.0, 9.0], [9.0, 0.0, 1.0], [9.0, 2.0, 0.0]]])
    p_u = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]]])
    support = torch.tensor([[False, True, True]])
    a, b = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(-2.0))  # softmax(-(0, 1)), softmax(-(0, 2)): first weights
    expected = torch.tensor([[[0.0, 0.0], [a, 1 - a], [1 - b, b]]])
    assert torch.allclose(fusion(p_u, cost, support), expected, atol=1e-6)
    with torch.no_grad():
        fusion.log_scale.fill_(math.log(2.0))  # s = 2: softmax(-2 C')
    a2 = 1 / (1 + math.exp(-2.0))
    assert torch.allclose(fusion(p_u, cost, support)[0, 1], torch.tensor([a2, 1 - a2]), atol=1e-6)
