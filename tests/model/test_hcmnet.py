"""HCMNet on tiny plain tensors: shapes, gradients, padding invariance, missing modalities."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from hcm.model.config import VARIANTS
from hcm.model.hcmnet import HCMNet, build_model

pytestmark = pytest.mark.usefixtures("one_thread")
SUBSETS = ("tva", "tv", "ta", "va")

LENGTHS = {"text": [5, 3, 4, 1], "video": [6, 2, 4, 3], "audio": [7, 5, 1, 2]}

# Parts each variant must build (True) or leave out (False): nothing is built and left untrained.
PARTS = {
    "full": dict(reasoning=1, pool_atomic=1, graphs=1, transport=1, fusion=1, cost_fusion=1, pool_composition=1),
    "acm-only": dict(reasoning=1, pool_atomic=1, graphs=0, transport=0, fusion=0, cost_fusion=0, pool_composition=0),
    "ccm-only": dict(reasoning=0, pool_atomic=0, graphs=1, transport=1, fusion=1, cost_fusion=1, pool_composition=1),
    "no-acl": dict(reasoning=1, pool_atomic=1, graphs=1, transport=1, fusion=1, cost_fusion=1, pool_composition=1),
    "no-graph": dict(reasoning=1, pool_atomic=1, graphs=0, transport=1, fusion=1, cost_fusion=1, pool_composition=1),
    "no-cdc": dict(reasoning=1, pool_atomic=1, graphs=1, transport=1, fusion=1, cost_fusion=0, pool_composition=1),
}
MODALITY_NAMES = {"tva": {"text", "video", "audio"}, "tv": {"text", "video"}, "ta": {"text", "audio"},
                  "va": {"video", "audio"}}


@pytest.fixture
def make_model(model_config) -> Callable[..., HCMNet]:
    """Factory: a tiny HCMNet under the ``hcm`` reading (test_readings.py covers ``paper``), seeded."""
    def make(seed: int = 0, **overrides) -> HCMNet:
        torch.manual_seed(seed)
        return build_model(model_config(**{"reading": "hcm", **overrides}))
    return make


@pytest.mark.parametrize("modalities", SUBSETS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_parts_and_gradients(variant: str, modalities: str, make_model, model_batch) -> None:
    model = make_model(variant=variant, modalities=modalities)
    out = model(model_batch(LENGTHS))
    blocks = int(variant != "ccm-only") + int(variant != "acm-only")
    assert out.prediction.shape == (4, 3)
    assert out.features.shape == (4, blocks * 16)
    assert set(out.losses) == {"acl", "task", "l2", "total"} and torch.isfinite(out.loss)
    uses_acl = variant in ("full", "acm-only", "no-graph", "no-cdc")
    assert (out.losses["acl"] > 0) == uses_acl
    for part, built in PARTS[variant].items():
        assert (getattr(model, part) is not None) == bool(built), part
    assert set(model.encoders) == MODALITY_NAMES[modalities]
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_regression_prediction_and_l1_task_loss(make_model, model_batch) -> None:
    model = make_model(task="regression", variant="no-acl")
    batch = model_batch(LENGTHS, regression=True)
    out = model(batch)
    assert out.prediction.shape == (4,)
    assert torch.allclose(out.loss, (out.prediction - batch["label"]).abs().mean())
    mse = make_model(task="regression", variant="no-acl", regression_loss="mse")(batch)
    assert torch.allclose(mse.loss, (mse.prediction - batch["label"]).pow(2).mean())


def test_without_label_there_is_no_loss(make_model, model_batch) -> None:
    batch = model_batch(LENGTHS)
    batch.pop("label")
    out = make_model()(batch)
    assert out.loss is None and out.losses == {}


@pytest.mark.parametrize("variant,modalities", [
    ("full", "tva"), ("no-cdc", "tva"), ("no-graph", "tva"), ("ccm-only", "ta"), ("full", "va"),
])
def test_padded_rows_never_change_outputs(variant: str, modalities: str, make_model, model_batch, padded_batch) -> None:
    model = make_model(variant=variant, modalities=modalities).eval()
    batch = model_batch(LENGTHS)
    padded = padded_batch(batch, extra=3)
    with torch.no_grad():
        a, b = model(batch), model(padded)
    assert torch.allclose(a.prediction, b.prediction, atol=1e-5)
    assert torch.allclose(a.features, b.features, atol=1e-5)
    assert torch.allclose(a.loss, b.loss, atol=1e-5)


def test_each_sample_is_independent_of_the_others_in_eval(make_model, model_batch) -> None:
    model = make_model().eval()
    batch = model_batch(LENGTHS)
    single = {k: v[1:2] for k, v in batch.items()}
    with torch.no_grad():
        together, alone = model(batch), model(single)
    assert torch.allclose(together.prediction[1:2], alone.prediction, atol=1e-5)


@pytest.mark.parametrize("variant", ["full", "no-cdc", "acm-only"])
def test_missing_modalities_give_finite_outputs(variant: str, make_model, model_batch) -> None:
    lengths = {"text": [0, 3, 4, 2], "video": [6, 0, 4, 0], "audio": [7, 5, 0, 0]}
    model = make_model(variant=variant)
    batch = model_batch(lengths)
    out = model(batch)
    assert torch.isfinite(out.prediction).all() and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_zero_node_tensors_are_accepted(make_model, model_batch) -> None:
    batch = model_batch({"text": [2, 3], "video": [1, 1], "audio": [1, 1]})
    batch["audio"] = torch.zeros(2, 0, 8)
    batch["audio_mask"] = torch.zeros(2, 0, dtype=torch.bool)
    out = make_model()(batch)
    assert torch.isfinite(out.prediction).all() and torch.isfinite(out.loss)


def test_plans_are_couplings_of_the_node_masks(make_model, model_batch) -> None:
    model = make_model().eval()
    batch = model_batch(LENGTHS)
    with torch.no_grad():
        plans = model(batch).plans
    text_nodes = torch.tensor(LENGTHS["text"], dtype=torch.float)
    for name in ("video", "audio"):
        plan = plans[name]  # (B, 1+N_m, 1+N_t), [CLS] rows first
        nodes = torch.tensor(LENGTHS[name], dtype=torch.float)
        assert torch.allclose(plan.sum(dim=(1, 2)), torch.ones(4), atol=1e-4)
        assert torch.allclose(plan[:, 1:].sum(2).sum(1), torch.ones(4), atol=1e-4)  # no mass on [CLS]
        assert torch.allclose(plan.sum(1)[:, 1:].max(1).values, 1 / text_nodes, atol=1e-3)
        assert torch.allclose(plan.sum(2)[:, 1:].max(1).values, 1 / nodes, atol=1e-3)


def test_bad_batches_raise_clear_errors(make_model, model_batch, model_config) -> None:
    model = make_model()
    batch = model_batch(LENGTHS)
    with pytest.raises(ValueError, match=r"batch\['video'\].*d_video"):
        model({**batch, "video": torch.zeros(4, 6, 99)})
    no_audio = {k: v for k, v in batch.items() if not k.startswith("audio")}
    with pytest.raises(KeyError, match="audio"):
        model(no_audio)
    with pytest.raises(ValueError, match="input widths unknown"):
        build_model(model_config(d_video=0))


def test_atomic_fusion_keeps_the_unimodal_terms() -> None:
    from hcm.model.atomic import inner_product_fusion
    from hcm.model.layers import ModalRows

    torch.manual_seed(0)
    valid = torch.tensor([[True, True, True, False]])
    support = torch.tensor([[False, True, True, False]])
    text = ModalRows(torch.randn(1, 4, 3) * valid.unsqueeze(-1), valid, support, torch.tensor([True]))
    video = ModalRows(torch.randn(1, 3, 3), torch.ones(1, 3, dtype=torch.bool),
                      torch.tensor([[False, True, True]]), torch.tensor([True]))
    rows = {"text": text, "video": video}
    mean_v = video.x[:, 1:].mean(dim=1, keepdim=True)  # (1, 1, 3)
    product, _ = inner_product_fusion(rows, "text", ("video",))
    tensor, _ = inner_product_fusion(rows, "text", ("video",), keep_unimodal=True)
    assert torch.allclose(product, mean_v * text.x)
    expected = (mean_v * text.x + mean_v + text.x) * valid.unsqueeze(-1)
    assert torch.allclose(tensor, expected, atol=1e-6)
    assert (tensor[:, 3] == 0).all()


@pytest.mark.parametrize("residual", [False, True])
def test_gcn_residual_skips_around_the_stack(residual: bool) -> None:
    from hcm.model.graphs import GraphConvolution

    torch.manual_seed(0)
    gcn = GraphConvolution(4, layers=2, dropout=0.0, residual=residual).eval()
    x = torch.randn(1, 3, 4)
    adj = torch.eye(3).unsqueeze(0)
    valid = torch.ones(1, 3, dtype=torch.bool)
    stack = x
    for layer in gcn.layers:
        stack = torch.relu(stack @ layer.weight.T + layer.bias)
    assert torch.allclose(gcn(x, adj, valid), x + stack if residual else stack, atol=1e-6)


@pytest.mark.parametrize("modalities", ["tva", "va"])
def test_paper_literal_fusion_and_gcn_still_train(modalities: str, make_model, model_batch) -> None:
    model = make_model(modalities=modalities, atomic_fusion="product", gcn_residual=False)
    out = model(model_batch(LENGTHS))
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("reading", ["paper", "hcm"])
def test_bf16_autocast_keeps_ot_and_losses_in_float32(reading: str, model_config, model_batch) -> None:
    """Forward/backward of the full model under CPU bf16 autocast: the OT plans match the float32
    plans to the inputs' bf16 rounding, the loss is float32, and every gradient is finite."""
    torch.manual_seed(0)
    model = build_model(model_config(reading=reading, dropout=0.0)).eval()
    batch = model_batch({"text": [5, 3, 4], "video": [2, 3, 1], "audio": [3, 1, 2]})
    reference = model(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(batch)
    assert mixed.loss.dtype == torch.float32
    for name, plan in mixed.plans.items():
        assert plan.dtype == torch.float32, name
        # bf16 keeps 8 mantissa bits: features entering the cost differ by ~0.4 % relative
        torch.testing.assert_close(plan, reference.plans[name], rtol=0.1, atol=0.02)
    mixed.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
