"""hcm.model.losses at its edges: label dtypes, the cosine forms of Eq. 7 against a plain loop,
samples without a modality, the stop-gradient and the clamp of Eq. 17's two readings, and
the pair order of Eq. 7 (v-t, v-a, t-a)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hcm.model.losses import (
    atomic_contrastive_loss,
    atomic_cosine_loss,
    balanced_objective,
    contrastive_classes,
    pair_contrastive,
    task_loss,
)

MODALITIES = ("video", "text", "audio")


def features(batch: int, dims: tuple[int, ...], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, *dims, generator=generator, dtype=torch.float64) for m in MODALITIES}


def everyone(batch: int) -> dict[str, torch.Tensor]:
    return {m: torch.ones(batch, dtype=torch.bool) for m in MODALITIES}


# ---------------------------------------------------------------------- task losses (Eq. 16)

def test_float_class_labels_are_class_indices_for_the_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.3, 0.0]])
    as_int = task_loss("cce", logits, torch.tensor([0, 2]))
    assert task_loss("cce", logits, torch.tensor([0.0, 2.0])).item() == pytest.approx(as_int.item())


@pytest.mark.parametrize("name", ["l1", "mse"])
def test_regression_losses_take_labels_of_any_dtype_in_the_predictions_dtype(name: str) -> None:
    prediction = torch.tensor([0.5, -1.0], dtype=torch.float32)
    expected = {"l1": 1.25, "mse": 2.125}[name]
    for label in (torch.tensor([1, 1]), torch.tensor([1.0, 1.0], dtype=torch.float64)):
        got = task_loss(name, prediction, label)
        assert got.dtype == torch.float32 and got.item() == pytest.approx(expected)


def test_class_weights_do_not_touch_regression_losses() -> None:
    prediction, label = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])
    assert task_loss("l1", prediction, label, torch.tensor([5.0, 0.1])).item() == pytest.approx(1.0)


# ---------------------------------------------------------------------- contrastive classes

def test_integer_labels_become_long_class_indices_unbinned() -> None:
    got = contrastive_classes(torch.tensor([3, -1], dtype=torch.int32), (-1.0, 1.0), 2.0)
    assert got.dtype == torch.int64 and got.tolist() == [3, -1]


def test_scores_are_clamped_into_the_label_range_on_both_sides_before_binning() -> None:
    got = contrastive_classes(torch.tensor([-7.0, -2.6, 0.4, 2.6, 7.0]), (-3.0, 3.0), 1.0)
    assert got.tolist() == [-3, -3, 0, 3, 3]


def test_scores_are_binned_without_a_range_as_they_are() -> None:
    got = contrastive_classes(torch.tensor([-7.2, 0.24, 9.6]), None, 0.5)
    assert got.dtype == torch.int64 and got.tolist() == [-14, 0, 19]


# ---------------------------------------------------------------------- Eq. 7, class-contrastive

def supcon_loop(x: torch.Tensor, y: torch.Tensor, classes: list[int], keep: list[bool], tau: float) -> float:
    """One direction of the class-aware loss, anchor by anchor over the kept samples."""
    kept = [i for i in range(len(classes)) if keep[i]]
    total = 0.0
    for i in kept:
        sims = {j: F.cosine_similarity(x[i], y[j], dim=0).item() / tau for j in kept}
        log_norm = math.log(sum(math.exp(s) for s in sims.values()))
        positives = [j for j in kept if classes[j] == classes[i]]
        total += -sum(sims[j] - log_norm for j in positives) / len(positives)
    return total / len(kept)


def test_the_contrastive_loss_is_the_mean_of_both_directions_summed_over_pairs() -> None:
    pooled = features(6, (4,), seed=3)
    classes = [0, 1, 0, 2, 1, 1]
    present = {"video": torch.tensor([True] * 6), "text": torch.tensor([True, True, True, False, True, True]),
               "audio": torch.tensor([False, True, True, True, True, True])}
    got = atomic_contrastive_loss(pooled, present, torch.tensor(classes), 0.3)
    expected = 0.0
    for first, second in (("video", "text"), ("video", "audio"), ("text", "audio")):
        keep = (present[first] & present[second]).tolist()
        expected += 0.5 * (supcon_loop(pooled[first], pooled[second], classes, keep, 0.3)
                           + supcon_loop(pooled[second], pooled[first], classes, keep, 0.3))
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_a_pair_without_a_shared_sample_adds_zero_but_keeps_the_gradient() -> None:
    pooled = {m: t.requires_grad_() for m, t in features(3, (4,), seed=4).items()}
    present = {"video": torch.tensor([True, False, False]), "text": torch.tensor([False, True, True]),
               "audio": torch.tensor([False, True, True])}
    alone = atomic_contrastive_loss(pooled, present, torch.tensor([0, 1, 0]), 0.5)
    only_text_audio = pair_contrastive(pooled["text"], pooled["audio"], torch.tensor([0, 1, 0]),
                                       torch.tensor([False, True, True]), 0.5)
    backward = pair_contrastive(pooled["audio"], pooled["text"], torch.tensor([0, 1, 0]),
                                torch.tensor([False, True, True]), 0.5)
    assert alone.item() == pytest.approx(0.5 * (only_text_audio + backward).item(), rel=1e-9)
    alone.backward()
    assert pooled["video"].grad is not None and float(pooled["video"].grad.abs().sum()) == 0.0


def test_an_anchor_alone_in_its_class_counts_its_own_pair_only() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    got = pair_contrastive(x, x, torch.tensor([0, 1]), torch.tensor([True, True]), 1.0)
    # each anchor: -log(e^1 / (e^1 + e^0))
    assert got.item() == pytest.approx(-math.log(math.e / (math.e + 1.0)), rel=1e-9)


def test_a_sample_without_the_modality_is_neither_anchor_nor_candidate() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    keep = torch.tensor([True, True, False])
    got = pair_contrastive(x, x, torch.tensor([0, 1, 0]), keep, 1.0)
    expected = pair_contrastive(x[:2], x[:2], torch.tensor([0, 1]), torch.tensor([True, True]), 1.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_the_temperature_divides_the_similarities() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    got = pair_contrastive(x, x, torch.tensor([0, 1]), torch.tensor([True, True]), 0.25)
    assert got.item() == pytest.approx(-math.log(math.exp(4.0) / (math.exp(4.0) + 1.0)), rel=1e-9)


def test_without_any_kept_sample_the_loss_is_zero_and_differentiable() -> None:
    x, y = torch.ones(2, 3, requires_grad=True), torch.ones(2, 3, requires_grad=True)
    got = pair_contrastive(x, y, torch.tensor([0, 1]), torch.tensor([False, False]), 0.5)
    got.backward()
    assert got.item() == 0.0 and float(x.grad.abs().sum()) == 0.0 and float(y.grad.abs().sum()) == 0.0


# ---------------------------------------------------------------------- Eq. 7, cosine forms

def cosine_loop(feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor], as_printed: bool) -> float:
    total = 0.0
    for first, second in (("video", "text"), ("video", "audio"), ("text", "audio")):
        kept = [i for i in range(len(present[first])) if present[first][i] and present[second][i]]
        values = []
        for i in kept:
            cos = F.cosine_similarity(feats[first][i].flatten(), feats[second][i].flatten(), dim=0).item()
            values.append(cos if as_printed else 1.0 - cos)
        total += sum(values) / len(kept) if kept else 0.0
    return total


@pytest.mark.parametrize("as_printed", [False, True])
@pytest.mark.parametrize("dims", [(4,), (3, 5)])
def test_the_cosine_forms_match_a_plain_loop(as_printed: bool, dims: tuple[int, ...]) -> None:
    feats = features(5, dims, seed=5)
    present = {"video": torch.tensor([True, True, False, True, True]), "text": torch.ones(5, dtype=torch.bool),
               "audio": torch.tensor([False, False, False, True, True])}
    got = atomic_cosine_loss(feats, present, as_printed=as_printed)
    assert got.item() == pytest.approx(cosine_loop(feats, present, as_printed), rel=1e-9)


def test_the_cosine_form_of_the_paper_reading_is_zero_for_equal_modalities() -> None:
    same = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    feats = {m: same.clone() for m in MODALITIES}
    assert atomic_cosine_loss(feats, everyone(2)).item() == pytest.approx(0.0, abs=1e-12)
    assert atomic_cosine_loss(feats, everyone(2), as_printed=True).item() == pytest.approx(3.0, rel=1e-12)


def test_the_cosine_of_a_zero_feature_is_zero_not_nan() -> None:
    feats = {"video": torch.zeros(1, 3), "text": torch.ones(1, 3)}
    got = atomic_cosine_loss(feats, {"video": torch.tensor([True]), "text": torch.tensor([True])})
    assert got.item() == pytest.approx(1.0)


def test_a_pair_with_no_sample_adds_nothing_to_the_cosine_form() -> None:
    feats = {m: t.requires_grad_() for m, t in features(2, (3,), seed=6).items()}
    present = {"video": torch.tensor([True, False]), "text": torch.tensor([False, True]),
               "audio": torch.tensor([False, True])}
    got = atomic_cosine_loss(feats, present)
    cos = F.cosine_similarity(feats["text"][1], feats["audio"][1], dim=0)
    assert got.item() == pytest.approx(1.0 - cos.item(), rel=1e-9)
    got.backward()
    assert float(feats["video"].grad.abs().sum()) == 0.0


# ---------------------------------------------------------------------- Eq. 17

def grads(total: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(total, w)
    return g


@pytest.mark.parametrize("reading", ["balanced", "literal"])
def test_both_readings_value_and_gradient(reading: str) -> None:
    w = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    acl, task = lambda: (w ** 2).sum() + 1.0, lambda: (w ** 3).sum() + 5.0  # 3.5 and 1.75
    total = balanced_objective(acl(), task(), None, reading)
    weight = {"balanced": 3.5 / 1.75, "literal": 1.75 / 3.5}[reading]  # what multiplies L_task's gradient
    assert total.item() == pytest.approx(3.5 + 1.75 * weight, rel=1e-12)
    expected = grads(acl(), w) + weight * grads(task(), w)
    assert torch.allclose(grads(total, w), expected, rtol=1e-12)


def test_the_literal_reading_is_any_reading_but_balanced() -> None:
    acl, task = torch.tensor(2.0), torch.tensor(8.0)
    assert balanced_objective(acl, task, None, "literal").item() == pytest.approx(2.0 + 8.0 / (2.0 / 8.0))
    assert balanced_objective(acl, task, None).item() == pytest.approx(4.0)  # balanced by default


def test_a_zero_denominator_reads_as_1e_12() -> None:
    task = torch.tensor(2.0, dtype=torch.float64)
    got = balanced_objective(torch.tensor(0.0, dtype=torch.float64), task, None)
    assert got.item() == pytest.approx(2.0 / (2.0 / 1e-12), rel=1e-9) and math.isfinite(got.item())
    literal = balanced_objective(torch.tensor(3.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64),
                                 None, "literal")
    assert literal.item() == pytest.approx(3.0)


@pytest.mark.parametrize(("acl", "task", "ratio"), [(1.0, 50.0, 10.0), (1.0, 0.01, 0.1), (1.0, 2.0, 2.0)])
def test_the_clamp_bounds_the_ratio_from_both_sides(acl: float, task: float, ratio: float) -> None:
    got = balanced_objective(torch.tensor(acl, dtype=torch.float64), torch.tensor(task, dtype=torch.float64),
                             (0.1, 10.0))
    assert got.item() == pytest.approx(acl + task / ratio, rel=1e-12)
