"""The objectives: class-aware contrastive loss (Eq. 7), task losses (Eq. 16), balance (Eq. 17)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hcm.model.losses import (
    atomic_contrastive_loss,
    balanced_objective,
    contrastive_classes,
    pair_contrastive,
    task_loss,
)


def test_balanced_term_gradient_is_task_gradient_times_detached_ratio() -> None:
    w = torch.randn(5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    acl = (w.sin() ** 2).sum() + 0.3
    task = (w ** 2).sum() + 0.1
    total = balanced_objective(acl, task, (1e-6, 1e6))
    (g_total,) = torch.autograd.grad(total, w, retain_graph=True)
    (g_acl,) = torch.autograd.grad(acl, w, retain_graph=True)
    (g_task,) = torch.autograd.grad(task, w)
    weight = (acl / task).detach()  # 1 / sg(L_task / L_acl)
    assert torch.allclose(g_total - g_acl, g_task * weight, atol=1e-6)
    assert torch.allclose(total, 2 * acl)  # the task term is rescaled to the value of L_acl


def test_balance_ratio_is_clamped_and_absent_acl_leaves_the_task_loss() -> None:
    task = torch.tensor(2.0)
    assert balanced_objective(None, task, (1e-2, 1e2)) is task
    tiny_acl = torch.tensor(1e-9)
    assert torch.allclose(balanced_objective(tiny_acl, task, (1e-2, 1e2)), tiny_acl + task / 1e2)
    huge_acl = torch.tensor(1e9)
    assert torch.allclose(balanced_objective(huge_acl, task, (1e-2, 1e2)), huge_acl + task / 1e-2)


def _reference_supcon(x: torch.Tensor, y: torch.Tensor, classes: list[int], tau: float) -> float:
    """Anchor-by-anchor loop of the supervised cross-modal contrastive loss."""
    total = 0.0
    for i in range(len(classes)):
        sims = [F.cosine_similarity(x[i], y[j], dim=0).item() / tau for j in range(len(classes))]
        log_norm = math.log(sum(math.exp(s) for s in sims))
        positives = [j for j in range(len(classes)) if classes[j] == classes[i]]
        total += -sum(sims[j] - log_norm for j in positives) / len(positives)
    return total / len(classes)


def test_pair_contrastive_matches_a_plain_loop() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    classes = [0, 1, 0, 2, 1]
    keep = torch.ones(5, dtype=torch.bool)
    got = pair_contrastive(x, y, torch.tensor(classes), keep, 0.5)
    assert got.item() == pytest.approx(_reference_supcon(x, y, classes, 0.5), rel=1e-5)


def test_pair_contrastive_skips_samples_without_the_modality() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    classes = [0, 1, 0, 2, 1]
    keep = torch.tensor([True, True, False, True, True])
    got = pair_contrastive(x, y, torch.tensor(classes), keep, 0.5)
    idx = [0, 1, 3, 4]
    expected = _reference_supcon(x[idx], y[idx], [classes[i] for i in idx], 0.5)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    x.requires_grad_(True)
    none = pair_contrastive(x, y, torch.tensor(classes), torch.zeros(5, dtype=torch.bool), 0.5)
    none.backward()
    assert none.item() == 0.0 and torch.isfinite(x.grad).all()


def test_contrastive_loss_prefers_class_aligned_embeddings() -> None:
    classes = torch.tensor([0, 0, 1, 1, 2, 2])
    aligned = F.one_hot(classes, 3).float()
    shuffled = aligned[torch.tensor([2, 4, 0, 5, 1, 3])]
    present = {m: torch.ones(6, dtype=torch.bool) for m in ("text", "video", "audio")}
    good = atomic_contrastive_loss({"text": aligned, "video": aligned, "audio": aligned}, present, classes, 0.1)
    bad = atomic_contrastive_loss({"text": aligned, "video": shuffled, "audio": aligned}, present, classes, 0.1)
    assert good < bad
    # Three pairs (v-t, v-a, a-t), each at its floor log(2): two positives per anchor, negatives ~0.
    assert good.item() == pytest.approx(3 * math.log(2), rel=1e-3)


def test_regression_scores_are_binned_for_the_contrastive_classes() -> None:
    scores = torch.tensor([-3.4, -0.4, 0.6, 1.49, 2.9])
    assert contrastive_classes(scores, (-3.0, 3.0), 1.0).tolist() == [-3, 0, 1, 1, 3]
    assert contrastive_classes(scores, (-3.0, 3.0), 2.0).tolist() == [-2, 0, 0, 1, 1]
    assert contrastive_classes(torch.tensor([2, 0]), None, 1.0).tolist() == [2, 0]


def test_task_losses() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.3, 0.0]])
    label = torch.tensor([0, 2])
    weights = torch.tensor([1.0, 1.0, 3.0])
    # by hand: the weighted mean sum_i w_{y_i} (-log softmax(z_i)_{y_i}) / sum_i w_{y_i}
    nll_0 = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0)) - 2.0  # sample 0, class 0, weight 1
    nll_1 = math.log(math.exp(0.1) + math.exp(0.3) + math.exp(0.0)) - 0.0  # sample 1, class 2, weight 3
    assert task_loss("cce", logits, label, weights).item() == pytest.approx((1 * nll_0 + 3 * nll_1) / 4, rel=1e-6)
    assert task_loss("cce", logits, label, None).item() == pytest.approx((nll_0 + nll_1) / 2, rel=1e-6)
    pred, target = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 1.0])
    assert task_loss("l1", pred, target).item() == pytest.approx(1.25)
    assert task_loss("mse", pred, target).item() == pytest.approx((0.25 + 4.0) / 2)
    with pytest.raises(ValueError, match="unknown task loss 'hinge'"):
        task_loss("hinge", pred, target)
