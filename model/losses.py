"""Learning objectives of HCMNet (Eq. 7, 16, 17).

- Eq. 7, atomic-level contrastive learning (ACL), three forms (``ModelConfig.acl_form``), each
  summed over the modality pairs (v-t, v-a, a-t); samples whose modality has no real node take
  no part in that modality's pairs:
  ``cosine`` (paper reading): ``sum_pairs mean_i (1 - cos(X_i, Y_i))``, the cosine similarity of
  one sample's two modalities as the formula writes it, with the sign its prose asks for
  (pulled close); ``cosine-as-printed``: ``sum_pairs mean_i cos(X_i, Y_i)`` with the printed
  sign (minimised, it pushes a sample's modalities apart). On the common node count the
  cosine is that of the (M, d) feature matrices (Frobenius), else of the support means.
  ``class-contrastive`` (hcm): a class-aware cross-modal contrastive loss over the batch.
  Anchor ``x_i`` of one modality is compared by cosine similarity / temperature with every
  ``y_j`` of the other; the samples of the same class (``j = i`` included) are positives, the
  others negatives (supervised contrastive form, averaged over positives), in both
  directions. Regression scores are binned into classes by rounding to multiples of
  ``bin_width`` inside the label range.
- Eq. 16: class-aware cross-entropy (per-class weights) for classification, L1 or MSE for
  regression. The ``xi ||theta||^2`` term of Eq. 16 is the optimizer's weight decay.
- Eq. 17, two readings (sg = stop-gradient):
  ``literal``: ``L = L_acl + L_task / sg(L_acl / L_task)`` as written; the task gradient is
  multiplied by ``L_task / L_acl``.
  ``balanced`` (hcm): ``L = L_acl + L_task / sg(L_task / L_acl)``; the task term takes the value
  of ``L_acl``, so both losses weigh the same whatever their algebraic scales, which is the
  intent the paper states (docs/model.md). With ``balance_clamp`` (hcm) the detached ratio is
  clamped into ``ratio_range`` so that a vanishing loss cannot blow the weight up. Without ACL
  the objective is ``L_task``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor

from hcm.core.registry import Registry
from hcm.model.capture import capturing

TaskLoss = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
TASK_LOSSES: Registry[TaskLoss] = Registry("task loss")  # fn(prediction, label, class_weights) -> scalar
register_task_loss = TASK_LOSSES.register


@register_task_loss("cce")
def class_aware_cross_entropy(logits: Tensor, label: Tensor, class_weights: Tensor | None) -> Tensor:
    """Eq. 16: (B, C) logits, (B,) class indices -> weighted mean cross-entropy."""
    return F.cross_entropy(logits, label.long(), weight=class_weights)


@register_task_loss("l1")
def l1_loss(prediction: Tensor, label: Tensor, class_weights: Tensor | None) -> Tensor:
    """Mean absolute error of (B,) scores (the MOSEI objective)."""
    return F.l1_loss(prediction, label.to(prediction.dtype))


@register_task_loss("mse")
def mse_loss(prediction: Tensor, label: Tensor, class_weights: Tensor | None) -> Tensor:
    """Mean squared error of (B,) scores."""
    return F.mse_loss(prediction, label.to(prediction.dtype))


def task_loss(name: str, prediction: Tensor, label: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Look the task loss up by name (``cce``, ``l1``, ``mse``)."""
    return TASK_LOSSES.get(name)(prediction, label, class_weights)


def contrastive_classes(label: Tensor, label_range: tuple[float, float] | None, bin_width: float) -> Tensor:
    """Classes for ACL: class indices as they are, regression scores binned (B,) -> (B,) long."""
    if not label.is_floating_point():
        return label.long()
    low, high = label_range if label_range is not None else (-float("inf"), float("inf"))
    return torch.round(label.clamp(low, high) / bin_width).long()


def pair_contrastive(x: Tensor, y: Tensor, classes: Tensor, keep: Tensor, temperature: float) -> Tensor:
    """Class-aware contrastive loss of anchors ``x`` against candidates ``y``, one direction.

    Args:
        x, y: (B, d) pooled features of two modalities.
        classes: (B,) class of each sample.
        keep: (B,) samples that have both modalities.
        temperature: divides the cosine similarities.
    """
    if not capturing() and not bool(keep.any()):
        return (x.sum() + y.sum()) * 0.0
    sim = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / temperature  # (B, B)
    # the dtype's lowest finite value, not -inf: the same softmax wherever a candidate is kept, and a
    # finite one (then masked to 0) where none is, as inside a graph capture, which skips the test above
    sim = sim.masked_fill(~keep.unsqueeze(0), torch.finfo(sim.dtype).min)
    log_prob = torch.log_softmax(sim, dim=1)  # (B, B) over candidates
    positive = (classes.unsqueeze(1) == classes.unsqueeze(0)) & keep.unsqueeze(0) & keep.unsqueeze(1)
    per_anchor = -(log_prob.masked_fill(~positive, 0.0)).sum(1) / positive.sum(1).clamp_min(1)
    anchors = keep & positive.any(1)
    return (per_anchor * anchors).sum() / anchors.sum().clamp_min(1)


def _modality_pairs(features: dict[str, Tensor], present: dict[str, Tensor]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Eq. 7's modality pairs (v-t, v-a, t-a) of ``features``: both features and the (B,) samples that have both."""
    names = [m for m in ("video", "text", "audio") if m in features]
    for first, second in combinations(names, 2):
        yield features[first], features[second], present[first] & present[second]


def _zero_loss(features: dict[str, Tensor]) -> Tensor:
    """0, tied to every feature: keeps the graph when no pair has a sample to count."""
    return sum(f.sum() for f in features.values()) * 0.0


def atomic_contrastive_loss(
    pooled: dict[str, Tensor], present: dict[str, Tensor], classes: Tensor, temperature: float
) -> Tensor:
    """Eq. 7, ``class-contrastive``: the sum over modality pairs of the symmetric class-aware loss."""
    total = _zero_loss(pooled)
    for x, y, keep in _modality_pairs(pooled, present):
        forward = pair_contrastive(x, y, classes, keep, temperature)
        backward = pair_contrastive(y, x, classes, keep, temperature)
        total = total + 0.5 * (forward + backward)
    return total


def atomic_cosine_loss(features: dict[str, Tensor], present: dict[str, Tensor], as_printed: bool = False) -> Tensor:
    """Eq. 7, ``cosine``: ``sum_pairs mean_i (1 - cos(X_i, Y_i))``; ``as_printed``: ``sum_pairs mean_i cos``.

    Args:
        features: modality -> (B, d) or (B, M, d) features of each sample (flattened per sample,
            so an (M, d) matrix gives the Frobenius cosine; rows outside the support must be 0).
        present: modality -> (B,) samples that have the modality; a pair counts the samples
            that have both.
    """
    total = _zero_loss(features)
    for x, y, both in _modality_pairs(features, present):
        keep = both.to(total.dtype)  # (B,)
        cos = F.cosine_similarity(x.flatten(1), y.flatten(1), dim=1, eps=1e-8)  # (B,)
        per_sample = cos if as_printed else 1.0 - cos
        total = total + (per_sample * keep).sum() / keep.sum().clamp_min(1.0)
    return total


def balanced_objective(acl: Tensor | None, task: Tensor, ratio_range: tuple[float, float] | None,
                       reading: str = "balanced") -> Tensor:
    """Eq. 17; ``L_task`` alone without ACL.

    ``"balanced"``: ``L_acl + L_task / sg(L_task / L_acl)``, the task term has the value of
    ``L_acl`` and the gradient of ``L_task`` times the detached ``L_acl / L_task``.
    ``"literal"``: ``L_acl + L_task / sg(L_acl / L_task)``, gradient
    ``grad L_acl + (L_task / L_acl) grad L_task``.
    ``ratio_range`` (``balance_clamp``) bounds the detached ratio; None leaves it as computed
    (a zero denominator still reads as 1e-12, never as a division by zero).
    """
    if acl is None:
        return task
    num, den = (task, acl) if reading == "balanced" else (acl, task)
    ratio = num.detach() / den.detach().clamp_min(1e-12)
    if ratio_range is not None:
        ratio = ratio.clamp(*ratio_range)
    return acl + task / ratio
