"""Atomic-level correlation modelling of HCMNet (Eq. 4-6).

- Eq. 4 (dynamic attention reasoning): M_ctn-head cross-attention of the video (audio) rows
  onto the text rows, plus ``lambda * alpha_t (beta_v + beta_a)`` on every head. The [CLS]
  terms are the *encoded* [CLS] rows of Eq. 1-3, so the term carries each sample's global
  summary of text, video and audio.
- Eq. 5 (atomic features): ``T~ = T``, ``V~ = V + Proj(h^v)``, ``A~ = A + Proj(h^a)``.
- Eq. 6 (element-wise inner-product fusion): ``P^vt_(i) = (sum_l V~_(l)) * T~_(i)`` for
  every text row i, the sum over the video support (``atomic_pool="sum"``, as written) or its
  mean (``"mean"``, hcm: the scale does not depend on the frame count); the same for
  ``P^at``. ``fusion="tensor"`` (hcm) adds the unimodal terms: ``(1 + V) * (1 + T) - 1``.
  ``P^A = [P^vt ; P^at]`` stacks them on the row axis (2 x text rows).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hcm.model.layers import MaskedAttention, ModalRows, weighted_mean


class DynamicAttentionReasoning(nn.Module):
    """Eq. 4-5: cross-attention of each non-text modality onto text, with the [CLS] term."""

    def __init__(self, others: tuple[str, ...], d_model: int, m_ctn: int, cls_lambda: float,
                 dropout: float) -> None:
        super().__init__()
        self.cls_lambda = cls_lambda
        self.attend = nn.ModuleDict({m: MaskedAttention(d_model, m_ctn, dropout) for m in others})
        self.drop = nn.Dropout(dropout)

    def forward(self, seqs: dict[str, ModalRows], anchor: str = "text") -> dict[str, ModalRows]:
        """Return the atomic features (T~, V~, A~) of Eq. 5.

        ``anchor`` is the modality attended to: text, or video for the V+A setting.
        """
        text = seqs[anchor]
        others = [seqs[m].cls for m in self.attend]
        cls_term = self.cls_lambda * text.cls * sum(others)  # (B, d): lambda alpha_t (beta_v + beta_a)
        out = {anchor: text}
        for name, attention in self.attend.items():
            seq = seqs[name]
            h = attention(seq.x, text.x, text.x, text.valid, extra=cls_term.unsqueeze(1))  # (B, 1+N_m, d)
            out[name] = seq.with_x(seq.x + self.drop(h))
        return out


def inner_product_fusion(atomic: dict[str, ModalRows], anchor: str, others: tuple[str, ...],
                         keep_unimodal: bool = False, pool: str = "mean") -> tuple[Tensor, Tensor]:
    """Eq. 6: ``P^A = [P^vt ; P^at]`` over the anchor (text) rows, and its row support.

    Args:
        pool: ``"sum"`` (Eq. 6 as written) or ``"mean"`` over each modality's support rows.

    Returns:
        ``(B, k*(1+N_t), d)`` rows and their ``(B, k*(1+N_t))`` support, k = len(others).
    """
    text = atomic[anchor]
    rows, support = [], []
    for name in others:
        seq = atomic[name]
        pooled = seq.pooled() if pool == "mean" else weighted_mean(seq.x, seq.support.to(seq.x.dtype))  # (B, d)
        if keep_unimodal:
            fused = (1.0 + pooled.unsqueeze(1)) * (1.0 + text.x) - 1.0  # (B, 1+N_t, d)
        else:
            fused = pooled.unsqueeze(1) * text.x  # (B, 1+N_t, d)
        rows.append(fused * text.valid.unsqueeze(-1))
        support.append(text.support)
    return torch.cat(rows, dim=1), torch.cat(support, dim=1)
