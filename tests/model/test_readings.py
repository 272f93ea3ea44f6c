"""The two readings of HCMNet: each literal equation on tiny hand-computed tensors, the common
node count M, and every variant x subset under the ``paper`` reading."""

from __future__ import annotations

import math

import pytest
import torch

from hcm.model.atomic import inner_product_fusion
from hcm.model.composition import CompositionTransport, CostGuidedFusion, FusionLayer, PairwiseGraphFusion
from hcm.model.config import READING_SWITCHES, VARIANTS, ModelConfig
from hcm.model.graphs import normalized_adjacency
from hcm.model.hcmnet import build_model
from hcm.model.layers import ModalRows
from hcm.model.losses import atomic_cosine_loss, balanced_objective
from hcm.model.nodes import area_weights, common_node_count

LENGTHS = {"text": [5, 3, 4, 1], "video": [6, 2, 4, 3], "audio": [7, 5, 1, 2]}


pytestmark = pytest.mark.usefixtures("one_thread")
SUBSETS = ("tva", "tv", "ta", "va")


def _rows(x: list, valid: list[bool], support: list[bool] | None = None) -> ModalRows:
    """One sample's rows from plain lists ([CLS] first)."""
    valid_t = torch.tensor([valid])
    support_t = torch.tensor([support if support is not None else [False] + valid[1:]])
    return ModalRows(torch.tensor([x], dtype=torch.float32), valid_t, support_t, support_t[:, 1:].any(1))


def test_eq6_sums_over_the_video_nodes() -> None:
    text = _rows([[9.0, 9.0], [1.0, 2.0], [3.0, -1.0]], [True, True, True])
    video = _rows([[5.0, 5.0], [1.0, 0.0], [2.0, 3.0], [7.0, 7.0]], [True, True, True, False])
    p_a, support = inner_product_fusion({"text": text, "video": video}, "text", ("video",), pool="sum")
    # sum_l V_(l) over the two real video nodes = (3, 3); P_(i) = (3, 3) * T_(i) on every text row
    expected = torch.tensor([[[27.0, 27.0], [3.0, 6.0], [9.0, -3.0]]])
    assert torch.equal(p_a, expected)
    assert support.tolist() == [[False, True, True]]
    mean, _ = inner_product_fusion({"text": text, "video": video}, "text", ("video",), pool="mean")
    assert torch.allclose(mean, expected / 2)


def test_eq12_literal_adds_the_transported_term_to_g_m() -> None:
    text = _rows([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [True, True, True])
    video = _rows([[0.0, 0.0], [2.0, 4.0], [6.0, 8.0]], [True, True, True])
    literal = CompositionTransport(("video",), 0.5, use_ot=False, eps=0.1, n_iters=5, backend="torch",
                                   update="literal", common_nodes=True)
    moved = literal({"text": text, "video": video})
    # H = mu_v mu_t^T with mu = (0, 1/2, 1/2): (H^T G_v)_j = 1/2 * mean(g_1, g_2) = (2, 3) for j = 1, 2
    expected = torch.tensor([[[0.0, 0.0], [2.0 + 1.0, 4.0 + 1.5], [6.0 + 1.0, 8.0 + 1.5]]])
    assert torch.allclose(moved.graphs["video"], expected)
    anchored = CompositionTransport(("video",), 0.5, use_ot=False, eps=0.1, n_iters=5, backend="torch")
    # G_t + gamma diag(1/mu_t) H^T G_v: each text node gets gamma * mean(g_1, g_2) = (2, 3)
    assert torch.allclose(anchored({"text": text, "video": video}).graphs["video"],
                          torch.tensor([[[0.0, 0.0], [3.0, 3.0], [2.0, 4.0]]]))


def test_eq12_literal_with_sinkhorn_uses_the_returned_plan() -> None:
    torch.manual_seed(0)
    text = _rows(torch.randn(4, 3).tolist(), [True, True, True, True])
    video = _rows(torch.randn(4, 3).tolist(), [True, True, True, True])
    transport = CompositionTransport(("video",), 0.7, use_ot=True, eps=0.1, n_iters=50, backend="torch",
                                     update="literal", common_nodes=True)
    moved = transport({"text": text, "video": video})
    plan = moved.plans["video"]
    assert torch.allclose(moved.graphs["video"], video.x + 0.7 * plan.transpose(1, 2) @ video.x, atol=1e-6)
    assert moved.transferred_cost.shape == (1, 4, 4)  # C_v itself on the common nodes


def test_eq15_product_is_c_prime_times_p_u() -> None:
    cost = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 3.0, 0.5]]])  # C' on [CLS ; 2 nodes]
    p_u = torch.tensor([[[9.0, 9.0], [1.0, -1.0], [2.0, 4.0]]])
    support = torch.tensor([[False, True, True]])
    out = CostGuidedFusion("product")(p_u, cost, support)
    # row 1: 1*(1,-1) + 2*(2,4) = (5, 7); row 2: 3*(1,-1) + 0.5*(2,4) = (4, -1); [CLS] row not in the support
    assert torch.allclose(out, torch.tensor([[[0.0, 0.0], [5.0, 7.0], [4.0, -1.0]]]))
    assert not list(CostGuidedFusion("product").parameters())


def test_eq17_literal_gradient() -> None:
    w = torch.randn(5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    acl = (w.sin() ** 2).sum() + 0.3
    cce = (w ** 2).sum() + 0.1
    total = balanced_objective(acl, cce, (1e-6, 1e6), reading="literal")
    (g_total,) = torch.autograd.grad(total, w, retain_graph=True)
    (g_acl,) = torch.autograd.grad(acl, w, retain_graph=True)
    (g_cce,) = torch.autograd.grad(cce, w)
    # L = L_acl + L_cce / sg(L_acl / L_cce): grad = grad L_acl + (L_cce / L_acl) grad L_cce
    assert torch.allclose(g_total, g_acl + (cce / acl).detach() * g_cce, atol=1e-6)
    assert torch.allclose(total, acl + cce ** 2 / acl)


def test_eq17_clamp_switch() -> None:
    acl, task = torch.tensor(1000.0), torch.tensor(1.0)
    # literal: ratio L_acl / L_task = 1000; balance_clamp bounds it to 100
    acl, task = acl.double(), task.double()  # float64: the task term (1/1000 or 1/100) is seen beside 1000
    assert (balanced_objective(acl, task, None, reading="literal") - 1000).item() == pytest.approx(0.001)
    assert (balanced_objective(acl, task, (1e-2, 1e2), reading="literal") - 1000).item() == pytest.approx(0.01)
    assert ModelConfig().balance_clamp is False and ModelConfig(reading="hcm").balance_clamp is True


def test_eq7_cosine_forms() -> None:
    features = {"video": torch.tensor([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]),
                "text": torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])}
    present = {"video": torch.tensor([True, True, True]), "text": torch.tensor([True, True, False])}
    # sample 2 has no text: left out; cos = (1, 1/sqrt 2) for samples 0 and 1
    pulled = atomic_cosine_loss(features, present)
    printed = atomic_cosine_loss(features, present, as_printed=True)
    assert torch.allclose(pulled, torch.tensor((0.0 + 1 - 1 / math.sqrt(2)) / 2))
    assert torch.allclose(printed, torch.tensor((1.0 + 1 / math.sqrt(2)) / 2))
    # three modalities: the sum over the pairs v-t, v-a, a-t; an (M, d) matrix gives the Frobenius cosine
    three = {"video": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), "text": torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]),
             "audio": torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])}
    everyone = {m: torch.tensor([True]) for m in three}
    # cos(V, T) = 1/sqrt 2, cos(V, A) = 0, cos(A, T) = 0 (the flattened matrices)
    assert torch.allclose(atomic_cosine_loss(three, everyone), torch.tensor(3 - 1 / math.sqrt(2)))


def test_eq10_self_loops_switch() -> None:
    path = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    valid = torch.tensor([[True, True, True]])
    r2, r6 = 1 / math.sqrt(2), 1 / math.sqrt(6)
    # D^-1/2 delta D^-1/2, degrees (1, 2, 1)
    assert torch.allclose(normalized_adjacency(path, valid, self_loops=False),
                          torch.tensor([[[0.0, r2, 0.0], [r2, 0.0, r2], [0.0, r2, 0.0]]]))
    # with self-loops, degrees (2, 3, 2)
    assert torch.allclose(normalized_adjacency(path, valid, self_loops=True),
                          torch.tensor([[[0.5, r6, 0.0], [r6, 1 / 3, r6], [0.0, r6, 0.5]]]))


def _identity(linear: torch.nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.weight.shape[0], linear.weight.shape[1]))
        linear.bias.zero_()


def test_eq13_shared_qk_attention_and_eq14_linear_ffn() -> None:
    layer = FusionLayer(2, 2, num_heads=1, dropout=0.0, attention="shared-qk", ffn="linear")
    _identity(layer.attn.q)
    _identity(layer.attn.v)
    first, second = layer.ffn  # Eq. 14: W_1(W_2 x + b_2) + b_1 with W_2 = 2 I, b_2 = (1, 0), W_1 = I, b_1 = (0, 3)
    _identity(first)
    _identity(second)
    with torch.no_grad():
        first.weight.mul_(2.0)
        first.bias.copy_(torch.tensor([1.0, 0.0]))
        second.bias.copy_(torch.tensor([0.0, 3.0]))
    guide = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    x = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])
    support = torch.tensor([[True, True]])
    # Q = K = guide: scores I / sqrt 2; row 0 weights (p, 1 - p), p = e^{1/sqrt 2} / (e^{1/sqrt 2} + 1)
    p = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    g_va = torch.tensor([[[2 * p, 4 * (1 - p)], [2 * (1 - p), 4 * p]]])
    expected = 2 * g_va + torch.tensor([1.0, 3.0])
    assert torch.allclose(layer(guide, x, support), expected, atol=1e-6)
    names = {n for n, _ in PairwiseGraphFusion(1, 2, 1, 2, 0.0, "shared-qk", "linear").named_parameters()}
    assert not any("norm" in n or ".k." in n for n in names)  # no LayerNorm, no separate W_k
    hcm = {n for n, _ in PairwiseGraphFusion(1, 2, 1, 2, 0.0, "multihead", "gelu-residual").named_parameters()}
    assert any(".k." in n for n in hcm) and any("norm" in n for n in hcm)


def test_eq15_cost_scale_switch() -> None:
    text = _rows([[9.0, 9.0], [0.0, 0.0], [3.0, 4.0]], [True, True, True])
    video = _rows([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]], [True, True, True])
    costs = {}
    for scale in ("raw", "unit-mean"):
        transport = CompositionTransport(("video",), 0.5, use_ot=True, eps=0.1, n_iters=10, backend="torch",
                                         update="literal", common_nodes=True, cost_scale=scale)
        costs[scale] = transport({"text": text, "video": video}).transferred_cost[0, 1:, 1:]
    # Euclidean distances of the support pairs: (0, 5) from each video node; their mean is 2.5
    assert torch.allclose(costs["raw"], torch.tensor([[0.0, 5.0], [0.0, 5.0]]), atol=1e-5)
    assert torch.allclose(costs["unit-mean"], torch.tensor([[0.0, 2.0], [0.0, 2.0]]), atol=1e-5)


def test_eq12_node_mass() -> None:
    text = _rows([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [True, True, True])
    video = _rows([[0.0, 0.0], [2.0, 4.0], [6.0, 8.0]], [True, True, True])
    literal = CompositionTransport(("video",), 0.5, use_ot=False, eps=0.1, n_iters=5, backend="torch",
                                   update="literal", common_nodes=True, mass="node")
    moved = literal({"text": text, "video": video})
    # mass 1 per text node: H = 2 mu_v mu_t^T, (H^T G_v)_j = mean(g_1, g_2) = (4, 6); gamma 0.5
    assert torch.allclose(moved.graphs["video"], torch.tensor([[[0.0, 0.0], [4.0, 7.0], [8.0, 11.0]]]))
    assert torch.allclose(moved.plans["video"].sum(), torch.tensor(1.0))  # returned plans keep total mass 1


def test_every_switch_has_a_paper_and_an_hcm_value() -> None:
    for switch in READING_SWITCHES:
        assert switch.paper != switch.hcm and {switch.paper, switch.hcm} <= set(switch.choices), switch.name
        for parameter in switch.parameters:
            assert parameter in ModelConfig.__dataclass_fields__, (switch.name, parameter)
    assert ModelConfig().reading == "paper" and ModelConfig().departures() == []


def test_a_saved_run_rebuilds_as_it_was_trained() -> None:
    # config.json of a run saved before the later switches existed: reading "paper", 8 switches
    before = {k: v for k, v in ModelConfig().to_dict().items()
              if k not in ("acl_form", "graph_self_loops", "pgf_attention", "pgf_ffn", "cost_scale", "balance_clamp")}
    cfg = ModelConfig.from_saved(before)
    assert cfg.reading == "paper" and cfg.atomic_fusion == "product"  # what it recorded stays
    assert (cfg.acl_form, cfg.graph_self_loops, cfg.pgf_attention, cfg.pgf_ffn, cfg.cost_scale, cfg.balance_clamp) == \
        ("class-contrastive", True, "multihead", "gelu-residual", "unit-mean", True)  # what the code then ran
    untouched = ModelConfig(reading="paper", d_model=32, num_heads=2, m_ctn=2).to_dict()
    assert ModelConfig.from_saved(untouched) == ModelConfig.from_dict(untouched)  # a new run: as recorded
    legacy = {k: v for k, v in ModelConfig(reading="hcm").to_dict().items() if k != "reading"}
    assert ModelConfig.from_saved(legacy).reading == "hcm"  # before `reading` existed: hcm's


def test_area_resampling_weights() -> None:
    weights = area_weights(torch.tensor([4, 2, 3, 0]), torch.tensor([2, 4, 2, 0]), 4, 4)
    assert torch.allclose(weights[0, :2], torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))  # pooled
    assert torch.allclose(weights[1, :, :2], torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]]))  # repeated
    assert torch.allclose(weights[2, :2, :3], torch.tensor([[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]]))
    assert weights[0, 2:].abs().sum() == 0 and weights[3].abs().sum() == 0


def test_common_node_count_puts_every_modality_on_the_anchor_nodes() -> None:
    # text nodes at rows 1 and 3 (row 2 padded), video with 4 real nodes, audio absent
    text = _rows([[0.0], [1.0], [0.0], [1.0]], [True, True, False, True])
    video = _rows([[7.0], [1.0], [3.0], [5.0], [7.0], [0.0]], [True, True, True, True, True, False])
    audio = _rows([[4.0], [0.0], [0.0]], [True, False, False], support=[True, False, False])
    rows = common_node_count({"text": text, "video": video, "audio": audio}, "text")
    assert rows["text"] is text
    assert rows["video"].x.tolist() == [[[7.0], [2.0], [0.0], [6.0]]]  # [CLS] kept, pairs averaged
    assert torch.equal(rows["video"].valid, text.valid) and torch.equal(rows["video"].support, text.support)
    assert rows["audio"].support.tolist() == [[True, False, False, False]] and not rows["audio"].present


@pytest.mark.parametrize("modalities", SUBSETS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_paper_reading_builds_and_trains_every_setting(variant: str, modalities: str, model_config,
                                                       model_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(reading="paper", variant=variant, modalities=modalities))
    out = model(model_batch(LENGTHS))
    assert torch.isfinite(out.loss) and out.prediction.shape == (4, 3)
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_native_node_counts_with_the_literal_cost_product(model_config, model_batch) -> None:
    torch.manual_seed(0)
    cfg = model_config(reading="paper", node_count="native", transport_update="text-anchored")
    out = build_model(cfg)(model_batch(LENGTHS))
    assert cfg.cost_fusion == "product" and torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("modalities", ["tva", "va"])
def test_paper_reading_ignores_padded_rows_and_missing_modalities(modalities: str, model_config, model_batch,
                                                                  padded_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(reading="paper", modalities=modalities)).eval()
    batch = model_batch(LENGTHS)
    with torch.no_grad():
        a, b = model(batch), model(padded_batch(batch, extra=3))
    assert torch.allclose(a.prediction, b.prediction, atol=1e-5) and torch.allclose(a.loss, b.loss, atol=1e-5)
    missing = model_batch({"text": [0, 3, 4, 2], "video": [6, 0, 4, 0], "audio": [7, 5, 0, 0]})
    out = model(missing)
    assert torch.isfinite(out.prediction).all() and torch.isfinite(out.loss)


def test_output_mapping_switch(model_config, model_batch) -> None:
    torch.manual_seed(0)
    batch = model_batch(LENGTHS, regression=True)
    cfg = dict(task="regression", label_range=(-3.0, 3.0), variant="no-acl")
    torch.manual_seed(0)
    raw = build_model(model_config(reading="paper", **cfg)).eval()
    torch.manual_seed(0)
    mapped = build_model(model_config(reading="paper", output_mapping="label-range", **cfg)).eval()
    with torch.no_grad():
        assert torch.allclose(3.0 * raw(batch).prediction, mapped(batch).prediction, atol=1e-6)
