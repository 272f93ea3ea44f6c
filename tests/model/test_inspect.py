"""hcm.model.inspect: the recorded plans, graphs and attention are the forward pass's own, and recording
changes no output."""

from __future__ import annotations

import pytest
import torch

from hcm.model.hcmnet import build_model
from hcm.model.inspect import attention_weights, record_details

pytestmark = pytest.mark.usefixtures("one_thread")
LENGTHS = {"text": [5, 3, 4], "video": [6, 2, 0], "audio": [7, 5, 2]}  # sample 2 has no video


@pytest.mark.parametrize("reading", ["hcm", "paper"])
def test_recording_changes_no_output_and_fills_every_part(reading: str, model_config, model_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(reading=reading)).eval()
    batch = model_batch(LENGTHS)
    with torch.no_grad():
        plain = model(batch)
        with record_details(model) as details:
            recorded = model(batch)
        after = model(batch)
    assert torch.equal(plain.prediction, recorded.prediction) and torch.equal(plain.prediction, after.prediction)
    assert set(details.plans) == {"video", "audio"} and set(details.attention) == {"video", "audio"}
    assert set(details.adjacency) == {"text", "video", "audio"} and details.eta == model.cfg.eta
    for name, plan in details.plans.items():
        assert torch.equal(plan, recorded.plans[name])
        assert torch.allclose(plan.sum(2), details.marginals[name], atol=1e-4)  # rows -> mu_m
        assert torch.allclose(plan.sum(1), details.marginals["text"], atol=1e-4)  # columns -> mu_t
    assert details.marginals["video"][2, 0] == 1.0  # no video: its [CLS] row carries all the mass
    assert not model.graphs._forward_pre_hooks and not model.transport._forward_hooks  # hooks removed


def test_video_graph_is_the_thresholded_similarity(model_config, model_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(eta=0.1)).eval()
    with torch.no_grad(), record_details(model) as details:
        model(model_batch(LENGTHS))
    kept = details.adjacency["video"] > 0
    assert torch.equal(details.adjacency["video"][kept], details.similarity[kept])
    assert (details.similarity[kept] > 0.1).all()
    assert kept.any()


def test_attention_weights_reproduce_the_attention_output() -> None:
    """weights @ V, joined and projected, is MaskedAttention's own output: the weights are the ones it used."""
    torch.manual_seed(0)
    from hcm.model.layers import MaskedAttention

    attention = MaskedAttention(8, 2, 0.0).eval()
    query, key = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    weights = attention_weights(attention, query, key, mask)  # (B, h, 3, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 3)) and (weights[0, :, :, 3:] == 0).all()
    values = attention._split(attention.v(key))  # (B, h, 5, 4)
    mine = attention.out((weights @ values).transpose(1, 2).flatten(2))
    assert torch.allclose(mine, attention(query, key, key, mask), atol=1e-5)


def test_a_variant_without_the_composition_level_records_only_attention(model_config, model_batch) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(variant="acm-only")).eval()
    with torch.no_grad(), record_details(model) as details:
        model(model_batch(LENGTHS))
    assert details.plans == {} and details.adjacency == {} and set(details.attention) == {"video", "audio"}
