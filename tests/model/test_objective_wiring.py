"""HCMNet's objective as wired in the model: ``total`` is Eq. 17 of the configured reading, and
the ACL (Eq. 7) counts only the pairs of modalities a sample has. Computed by hand from the
model's own task loss and atomic features, not through hcm.model.losses."""

from __future__ import annotations

import pytest
import torch

from hcm.model.hcmnet import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = {"text": [5, 3, 4, 1], "video": [6, 2, 4, 3], "audio": [7, 5, 1, 2]}
PAIRS = (("video", "text"), ("video", "audio"), ("text", "audio"))


def _eq17(acl: float, task: float, balance: str, clamp: tuple[float, float] | None) -> float:
    """Eq. 17's value: ``L_acl + L_task / r`` with r = L_acl / L_task ("literal") or its inverse."""
    ratio = acl / task if balance == "literal" else task / acl
    if clamp is not None:
        ratio = min(max(ratio, clamp[0]), clamp[1])
    return acl + task / ratio


@pytest.mark.parametrize("reading,balance", [
    ("paper", None), ("hcm", None), ("paper", "balanced"), ("hcm", "literal"),
])
def test_total_is_eq17_of_the_configured_reading(reading: str, balance: str | None, model_config,
                                                 model_batch) -> None:
    overrides = {} if balance is None else {"objective_balance": balance}
    torch.manual_seed(0)
    cfg = model_config(reading=reading, dropout=0.0, **overrides)
    model = build_model(cfg).eval()
    batch = model_batch(LENGTHS)
    with torch.no_grad():
        out = model(batch)
    logits, label = out.prediction.double(), batch["label"]
    task = float(-(logits.log_softmax(-1).gather(1, label[:, None])).mean())  # Eq. 16, no class weights
    acl = float(out.losses["acl"])
    assert acl > 0 and float(out.losses["task"]) == pytest.approx(task, rel=1e-5)
    # Eq. 16's xi ||theta||^2 is part of L_cce under the paper reading, AdamW's decay under hcm's.
    squares = sum(float(p.detach().double().pow(2).sum()) for p in model.parameters())
    l2 = cfg.xi * squares if reading == "paper" else 0.0
    assert float(out.losses["l2"]) == pytest.approx(l2, rel=1e-5) and (reading == "hcm" or l2 > 0)
    task += l2
    expected_balance = balance or {"paper": "literal", "hcm": "balanced"}[reading]
    clamp = cfg.balance_ratio_range if cfg.balance_clamp else None
    expected = _eq17(acl, task, expected_balance, clamp)
    other = _eq17(acl, task, "balanced" if expected_balance == "literal" else "literal", clamp)
    assert abs(expected - other) > 1e-3 * expected  # the two forms differ on this batch
    assert float(out.losses["total"]) == pytest.approx(expected, rel=1e-5)
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)


def test_acl_counts_only_the_pairs_a_sample_has(model_config, model_batch) -> None:
    lengths = {**LENGTHS, "audio": [7, 0, 1, 2], "video": [6, 2, 0, 3]}  # sample 1 lacks audio, 2 video
    torch.manual_seed(0)
    model = build_model(model_config(variant="acm-only", dropout=0.0)).eval()
    batch = model_batch(lengths)
    with torch.no_grad():
        out = model(batch)
        atomic, _ = model.atomic(model.encode(batch))
    has = {m: [n > 0 for n in lengths[m]] for m in lengths}
    expected, everything = 0.0, 0.0
    for a, b in PAIRS:
        x = (atomic[a].x[:, 1:] * atomic[a].support[:, 1:, None]).flatten(1).double()
        y = (atomic[b].x[:, 1:] * atomic[b].support[:, 1:, None]).flatten(1).double()
        terms = []
        for i in range(x.shape[0]):
            norm = float(x[i].norm() * y[i].norm())
            cos = float(x[i] @ y[i]) / norm if norm > 0 else 0.0
            terms.append((1.0 - cos, has[a][i] and has[b][i]))
        kept = [t for t, keep in terms if keep]
        expected += sum(kept) / len(kept)
        everything += sum(t for t, _ in terms) / len(terms)
    assert abs(expected - everything) > 1e-3  # counting the absent pairs would change the value
    assert float(out.losses["acl"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("penalty", ["l2-loss", "decoupled"])
def test_eq16_weight_penalty_is_in_the_loss_or_in_adamw_never_both(penalty: str, model_config, model_batch,
                                                                   tmp_path) -> None:
    """``weight_penalty`` "l2-loss" (paper): the gradient of ``xi ||theta||^2`` flows through the loss
    (here the only loss: an untouched parameter's gradient is ``2 xi theta``) and AdamW decays
    nothing; "decoupled" (hcm): no loss term, AdamW decays by ``train.weight_decay``."""
    from types import SimpleNamespace

    from hcm.training.distributed import Dist
    from hcm.training.settings import TrainConfig
    from hcm.training.trainer import new_loop

    torch.manual_seed(0)
    cfg = model_config(reading="paper", weight_penalty=penalty, xi=0.01, dropout=0.0)
    model = build_model(cfg)
    penalty_value = model.weight_penalty()
    if penalty == "decoupled":
        assert float(penalty_value) == 0.0
    else:
        penalty_value.backward()
        for p in model.parameters():
            assert torch.allclose(p.grad, 2 * 0.01 * p.detach(), atol=1e-7)
    train_cfg = TrainConfig(weight_decay=0.05, epochs=1)
    setup = SimpleNamespace(model_cfg=cfg)
    loop = new_loop(setup, train_cfg, Dist(0, 1, torch.device("cpu")), lambda c: build_model(c), steps_per_epoch=1)
    decays = {group["weight_decay"] for group in loop.optimizer.param_groups}
    assert decays == ({0.0} if penalty == "l2-loss" else {0.05})
