"""HCMNet passes each setting of its ModelConfig to the part that acts on it: every reading switch,
the head, the class weights, the label-range mapping, the balance clamp, Eq. 16's xi and each ACL
form (the parts themselves are checked by hand in test_readings.py, test_composition.py,
test_nodes.py and test_losses.py; the objective's value in test_objective_wiring.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hcm.model.hcmnet as hcmnet
from hcm.model.hcmnet import HCMNet, build_model
from hcm.model.losses import atomic_contrastive_loss, atomic_cosine_loss, contrastive_classes

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = {"text": [5, 3, 4, 1], "video": [6, 2, 4, 3], "audio": [7, 5, 1, 2]}
SETTINGS = [
    dict(reading="paper"),
    dict(reading="hcm"),
    dict(reading="paper", ot_mass="node", graph_self_loops=True, gcn_residual=True, ot_backend="torch",
         atomic_fusion="tensor"),
    dict(reading="hcm", node_count="common", transport_update="literal", cost_scale="raw", pgf_attention="shared-qk",
         cost_fusion="product", atomic_pool="sum", ot_eps=0.3, ot_iters=12),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_every_switch_reaches_its_part(settings: dict, model_config) -> None:
    cfg = model_config(**settings)
    model = build_model(cfg)
    assert model.encoders["text"].mixing is None  # text has no frames to mix
    assert model.encoders["video"].mixing is not None and model.encoders["audio"].mixing is not None
    assert model.graphs.self_loops is cfg.graph_self_loops
    assert all(gcn.residual is cfg.gcn_residual for gcn in model.graphs.gcn.values())
    transport = model.transport
    assert (transport.update, transport.cost_scale, transport.node_mass, transport.common_nodes) == \
        (cfg.transport_update, cfg.cost_scale, cfg.ot_mass == "node", cfg.node_count == "common")
    assert (transport.eps, transport.n_iters, transport.backend) == (cfg.ot_eps, cfg.ot_iters, cfg.ot_backend)
    assert all(layer.multihead == (cfg.pgf_attention == "multihead") and
               layer.residual_ffn == (cfg.pgf_ffn == "gelu-residual") for layer in model.fusion.layers)
    assert len(model.fusion.layers) == cfg.m_c and model.cost_fusion.mode == cfg.cost_fusion


@pytest.mark.parametrize("settings", SETTINGS[:4], ids=["paper", "hcm", "tensor", "sum"])
def test_eq6_is_called_with_the_configured_fusion_and_pool(settings: dict, model_config, model_batch,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    fuse = hcmnet.inner_product_fusion

    def recording(atomic, anchor, others, keep_unimodal, pool):
        seen.append((keep_unimodal, pool))
        return fuse(atomic, anchor, others, keep_unimodal, pool)

    monkeypatch.setattr(hcmnet, "inner_product_fusion", recording)
    cfg = model_config(**settings)
    build_model(cfg)(model_batch(LENGTHS))
    assert seen == [(cfg.atomic_fusion == "tensor", cfg.atomic_pool)]


def test_the_head_is_norm_linear_gelu_dropout_linear(model_config) -> None:
    model = build_model(model_config(dropout=0.25))
    assert [type(part) for part in model.classifier] == [nn.LayerNorm, nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    assert model.classifier[3].p == 0.25 and model.classifier[0].normalized_shape == (2 * 16,)


def test_class_weights_weigh_the_task_loss_and_are_not_saved(model_config, model_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(class_weights=(1.0, 3.0, 0.5), dropout=0.0)).eval()
    batch = model_batch(LENGTHS)
    with torch.no_grad():
        out = model(batch)
    weights = [1.0, 3.0, 0.5]
    logits, label = out.prediction.double(), batch["label"].tolist()
    terms = [-float(logits[i].log_softmax(-1)[c]) * weights[c] for i, c in enumerate(label)]
    expected = sum(terms) / sum(weights[c] for c in label)  # Eq. 16: the weighted mean
    assert float(out.losses["task"]) == pytest.approx(expected, rel=1e-5)
    assert model.class_weights.tolist() == weights
    assert not {"class_weights", "output_affine"} & set(model.state_dict())  # derived, not weights


def test_class_weights_still_by_name_are_refused(model_config) -> None:
    with pytest.raises(ValueError, match=r"^class_weights 'inverse_frequency' must be turned into numbers from the "
                                         r"training split before the model is built \(the trainer does this\)$"):
        HCMNet(model_config(class_weights="inverse_frequency"))


def test_the_label_range_maps_the_head_onto_its_centre_and_half_width(model_config, model_batch) -> None:
    batch = model_batch(LENGTHS, regression=True)
    cfg = dict(task="regression", label_range=(0.0, 10.0), variant="no-acl", reading="paper", dropout=0.0)
    for mapping, centre, half_width in (("label-range", 5.0, 5.0), ("none", 0.0, 1.0)):
        torch.manual_seed(0)
        model = build_model(model_config(output_mapping=mapping, **cfg)).eval()
        with torch.no_grad():
            out = model(batch)
            head = model.classifier(out.features)  # (B, 1): the head's own output
        assert head.shape == (4, 1) and head.abs().min() > 1e-4
        assert torch.allclose(out.prediction, centre + half_width * head[:, 0], atol=1e-6), mapping


def test_a_double_precision_model_takes_a_float32_batch(model_config, model_batch) -> None:
    """The batch is cast to the model's dtype (the atomic level here: the composition level keeps its
    transport in float32 and is float32 or autocast only)."""
    torch.manual_seed(0)
    model = build_model(model_config(reading="paper", variant="acm-only")).double().eval()
    batch = model_batch(LENGTHS)
    with torch.no_grad():
        out = model(batch)
    assert out.prediction.dtype == torch.float64 and torch.isfinite(out.loss)


@pytest.mark.parametrize("balance", ["balanced", "literal"])
def test_the_balance_clamp_bounds_the_ratio_only_when_on(balance: str, model_config, model_batch) -> None:
    batch = model_batch(LENGTHS)
    parts = {}
    for clamp in (False, True):
        torch.manual_seed(0)
        cfg = model_config(reading="hcm", objective_balance=balance, balance_clamp=clamp,
                           balance_ratio_range=(40.0, 50.0), dropout=0.0)
        with torch.no_grad():
            parts[clamp] = build_model(cfg).eval()(batch).losses
    acl, task = float(parts[True]["acl"]), float(parts[True]["task"] + parts[True]["l2"])
    ratio = task / acl if balance == "balanced" else acl / task
    assert not 40.0 <= ratio <= 50.0  # the range binds on this batch
    assert float(parts[True]["total"]) == pytest.approx(acl + task / min(max(ratio, 40.0), 50.0), rel=1e-5)
    assert float(parts[False]["total"]) == pytest.approx(acl + task / ratio, rel=1e-5)


def test_eq16_penalty_with_xi_one_is_the_sum_of_squares(model_config) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(reading="paper", xi=1.0))
    squares = sum(float(p.detach().double().pow(2).sum()) for p in model.parameters())
    assert float(model.weight_penalty().detach()) == pytest.approx(squares, rel=1e-5)
    model.requires_grad_(False)  # nothing trainable: nothing to penalise
    assert float(model.weight_penalty()) == 0.0


def _atomic(model: HCMNet, batch: dict) -> dict:
    with torch.no_grad():
        atomic, _ = model.atomic(model.encode(batch))
    return atomic


@pytest.mark.parametrize("form", ["cosine", "cosine-as-printed"])
def test_each_cosine_acl_form_is_computed_as_named(form: str, model_config, model_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(reading="hcm", node_count="native", acl_form=form, dropout=0.0)).eval()
    batch = model_batch(LENGTHS)
    atomic = _atomic(model, batch)
    pooled = {m: atomic[m].pooled() for m in atomic}
    present = {m: atomic[m].present for m in atomic}
    with torch.no_grad():
        acl = float(model(batch).losses["acl"])
    printed = float(atomic_cosine_loss(pooled, present, as_printed=True))
    as_meant = float(atomic_cosine_loss(pooled, present, as_printed=False))
    assert abs(printed - as_meant) > 1e-3
    assert acl == pytest.approx(printed if form == "cosine-as-printed" else as_meant, rel=1e-5)


def test_the_class_contrastive_acl_bins_scores_within_the_label_range(model_config, model_batch) -> None:
    torch.manual_seed(0)
    cfg = model_config(reading="hcm", task="regression", label_range=(-1.0, 1.0), acl_bin_width=0.5,
                       acl_form="class-contrastive", dropout=0.0)
    model = build_model(cfg).eval()
    batch = model_batch(LENGTHS, regression=True)
    batch["label"] = torch.tensor([-2.9, -1.6, 0.2, 2.6])  # three beyond the range: clamped to its ends
    atomic = _atomic(model, batch)
    classes = contrastive_classes(batch["label"], (-1.0, 1.0), 0.5)
    assert classes.tolist() == [-2, -2, 0, 2]  # unclamped, the first two would differ (-6, -3)
    expected = atomic_contrastive_loss({m: atomic[m].pooled() for m in atomic},
                                       {m: atomic[m].present for m in atomic}, classes, cfg.acl_temperature)
    cosine = atomic_cosine_loss({m: atomic[m].pooled() for m in atomic}, {m: atomic[m].present for m in atomic})
    with torch.no_grad():
        acl = float(model(batch).losses["acl"])
    assert acl == pytest.approx(float(expected), rel=1e-5) and not math.isclose(acl, float(cosine), rel_tol=1e-3)
