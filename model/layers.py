"""Building blocks of HCMNet: masks, attention, modality heads and encoders (Eq. 1-3).

Every sequence inside the network carries a learnable [CLS] row at position 0 followed by the
modality's nodes, so an attention always has at least one key and a modality with no real
node still yields finite values. Two masks describe such a sequence:

- ``valid`` (B, 1+N): the [CLS] row and the real nodes; keys of self-attention.
- ``support`` (B, 1+N): the rows a modality is *represented by*: its real nodes, or the [CLS]
  row alone when it has none. Pooling, optimal-transport marginals and composition-level
  attention use the support, so padded rows never influence an output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def prepend_cls(x: Tensor, mask: Tensor, cls: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Put the [CLS] vector in front of each sequence.

    Args:
        x: (B, N, d) node features, padded rows arbitrary.
        mask: (B, N) True for real nodes.
        cls: (d,) learnable [CLS] vector.

    Returns:
        ``(B, 1+N, d)`` features with padded rows zeroed, the ``valid`` and ``support`` masks.
    """
    batch = x.shape[0]
    x = x * mask.unsqueeze(-1)
    x = torch.cat([cls.expand(batch, 1, -1), x], dim=1)  # (B, 1+N, d)
    present = mask.any(dim=1, keepdim=True)  # (B, 1)
    valid = torch.cat([torch.ones_like(present), mask], dim=1)  # (B, 1+N)
    support = torch.cat([~present, mask], dim=1)  # (B, 1+N)
    return x, valid, support


def support_weights(support: Tensor) -> Tensor:
    """(B, N) bool -> (B, N) uniform weights over each row's support (each row sums to 1)."""
    weights = support.float()
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)


def weighted_mean(x: Tensor, weights: Tensor) -> Tensor:
    """(B, N, d), (B, N) -> (B, d) weighted sum over the node axis."""
    return torch.einsum("bn,bnd->bd", weights, x)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` where ``mask`` is True; exactly 0 elsewhere; all-False rows give 0."""
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=dim)
    return torch.nan_to_num(probs, nan=0.0)


@dataclass
class ModalRows:
    """One modality inside the network: rows with [CLS] at 0 and their masks."""

    x: Tensor  # (B, 1+N, d)
    valid: Tensor  # (B, 1+N) [CLS] + real nodes
    support: Tensor  # (B, 1+N) real nodes, or [CLS] alone when there are none
    present: Tensor  # (B,) the sample has at least one real node

    @property
    def cls(self) -> Tensor:
        return self.x[:, 0]  # (B, d)

    def pooled(self) -> Tensor:
        """Uniform mean over the support rows, (B, d)."""
        return weighted_mean(self.x, support_weights(self.support))

    def with_x(self, x: Tensor) -> ModalRows:
        return ModalRows(x * self.valid.unsqueeze(-1), self.valid, self.support, self.present)

    def float(self) -> ModalRows:
        """The rows in float32 (from a half-precision autocast region)."""
        return ModalRows(self.x.float(), self.valid, self.support, self.present)


class MaskedAttention(nn.Module):
    """Multi-head attention with a key mask and an optional term added to the joined heads.

    The extra term is how Eq. 4 adds ``lambda * alpha_t (beta_v + beta_a)`` to every head
    before the output projection ``Proj`` of Eq. 5.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float, d_query: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(d_query or d_model, d_model)
        self.k = nn.Linear(d_query or d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, h, n, d/h)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, key_mask: Tensor, extra: Tensor | None = None
    ) -> Tensor:
        """query (B, Nq, dq), key (B, Nk, dq), value (B, Nk, d), key_mask (B, Nk) -> (B, Nq, d)."""
        q, k, v = self._split(self.q(query)), self._split(self.k(key)), self._split(self.v(value))
        attn_mask = key_mask[:, None, None, :]  # (B, 1, 1, Nk)
        p = self.dropout if self.training else 0.0
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, h, Nq, d/h)
        joined = heads.transpose(1, 2).flatten(2)  # (B, Nq, d)
        if extra is not None:
            joined = joined + extra
        return self.out(joined)


class FeedForward(nn.Sequential):
    """Position-wise two-layer feed-forward network ``W1 act(W2 x + b2) + b1`` (Eq. 14)."""

    def __init__(self, d_model: int, dropout: float, expansion: int = 4) -> None:
        super().__init__(
            nn.Linear(d_model, expansion * d_model), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(expansion * d_model, d_model),
        )


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block over the valid rows of one sequence."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MaskedAttention(d_model, num_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, valid))
        return x + self.drop(self.ffn(self.norm2(x)))


class ModalityHead(nn.Module):
    """Modality-specific head: project one modality's cached rows (D_m) into d_m."""

    def __init__(self, d_in: int, d_model: int, dropout: float) -> None:
        super().__init__()
        if d_in <= 0:
            raise ValueError(
                f"input width {d_in} for a modality head; fill d_text/d_video/d_audio from the cache "
                "(ModelConfig.for_dataset) before building HCMNet"
            )
        self.proj = nn.Sequential(nn.Linear(d_in, d_model), nn.LayerNorm(d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # (B, N, d)


class TemporalMixing(nn.Module):
    """Depthwise convolution over neighbouring frames/segments (cross-frame communication)."""

    def __init__(self, d_model: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, N, d) nodes without [CLS], mask (B, N); padded rows read as zeros (= sequence end)."""
        if x.shape[1] == 0:
            return x
        h = self.norm(x) * mask.unsqueeze(-1)
        mixed = self.conv(h.transpose(1, 2)).transpose(1, 2)  # (B, N, d)
        return (x + mixed) * mask.unsqueeze(-1)


class ModalityEncoder(nn.Module):
    """Eq. 1-3: ``W_m F_m([I^m (+) cls_m]) + b_m`` for one modality.

    ``F_direct`` (text) is a stack of self-attention blocks; ``F_cross`` (video, audio) first
    mixes neighbouring frames, then applies the same self-attention blocks across frames.
    The [CLS] vector is ``alpha_t`` for text and ``beta_v`` / ``beta_a`` for video / audio.
    """

    def __init__(self, d_in: int, d_model: int, num_heads: int, layers: int, dropout: float,
                 cross_frame: bool) -> None:
        super().__init__()
        self.head = ModalityHead(d_in, d_model, dropout)
        self.cls = nn.Parameter(torch.randn(d_model) * 0.02)
        self.mixing = TemporalMixing(d_model) if cross_frame else None
        self.blocks = nn.ModuleList(SelfAttentionBlock(d_model, num_heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)  # W_m, b_m

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, D_m), mask (B, N) -> features (B, 1+N, d), valid (B, 1+N), support (B, 1+N)."""
        h = self.head(x)  # (B, N, d)
        if self.mixing is not None:
            h = self.mixing(h, mask)
        h, valid, support = prepend_cls(h, mask, self.cls)  # (B, 1+N, d)
        for block in self.blocks:
            h = block(h, valid)
        h = self.out(self.norm(h))
        return h * valid.unsqueeze(-1), valid, support


class AttentionPool(nn.Module):
    """Pool the support rows of a (B, N, d) set into (B, d) with a learnable query."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.query = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor, support: Tensor) -> Tensor:
        h = self.norm(x)
        scores = h @ self.query / h.shape[-1] ** 0.5  # (B, N)
        weights = masked_softmax(scores, support)
        return weighted_mean(h, weights)  # (B, d)
