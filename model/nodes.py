"""One node count M for every modality: the paper reading's node rule.

The paper writes ``V, T, A in R^{M x d_m}`` (one M for all three), and Eq. 6, 12, 13 and 15
are only defined that way (``G_m + gamma_m H_m^T G_m`` adds an (M_t x d) term to G_m;
``C' = C_v + C_a`` adds a video cost to an audio cost). hcm's caches keep what each
modality has: tokens, frames, segments. Under ``node_count="common"`` the encoded video and
audio rows (after Eq. 1-3) are resampled, per sample, onto the anchor's nodes (text; video
in the V+A setting):

- M of a sample is its anchor's real node count; the resampled rows take exactly the
  anchor's node positions and mask, so node i of every modality sits on row i.
- Resampling is by area: target node i averages the source nodes over its share
  ``[i n/M, (i+1) n/M)`` of the sequence, weighted by overlap. Longer sequences are
  average-pooled, shorter ones repeat each source node over the targets it covers, equal
  ones are unchanged. Averaging (rather than padding with masked nodes) keeps every target
  node real, so no literal equation ever pairs a real node with a padded one.
- A sample without anchor nodes keeps min(n, anchor width) evenly averaged nodes; a modality
  a sample lacks stays absent (its [CLS] row represents it).

Why here and not in the cache: the encoders of Eq. 1-3 see the frames and segments as
extracted (the paper's ``I^v in R^{T x d_v}``, ``I^a in R^{k x d_a}``); only their outputs
are put on M nodes, as the paper's ``V = {V_(1), ..., V_(M)}``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hcm.model.layers import ModalRows


def real_first(mask: Tensor) -> Tensor:
    """(B, N) bool -> (B, N) permutation listing each row's real positions first, in order."""
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices


def area_weights(source: Tensor, target: Tensor, n_source: int, n_target: int) -> Tensor:
    """(B,) counts -> (B, n_target, n_source) area-resampling weights, rows of real targets sum to 1."""
    src = source.clamp_min(1).to(torch.float32)[:, None, None]  # (B, 1, 1)
    tgt = target.clamp_min(1).to(torch.float32)[:, None, None]
    i = torch.arange(n_target, dtype=torch.float32, device=source.device)[None, :, None]  # (1, T, 1)
    k = torch.arange(n_source, dtype=torch.float32, device=source.device)[None, None, :]  # (1, 1, S)
    low, high = i * src / tgt, (i + 1) * src / tgt  # target i covers [low, high) of the source
    overlap = (torch.minimum(high, k + 1) - torch.maximum(low, k)).clamp_min(0.0)  # (B, T, S)
    keep = (i < target[:, None, None]) & (k < source[:, None, None])
    weights = overlap * keep
    return weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)


def to_anchor_nodes(rows: ModalRows, anchor: ModalRows) -> ModalRows:
    """Resample one modality's node rows (after [CLS]) onto the anchor's node positions.

    Args:
        rows: the modality, x (B, 1+N, d) with [CLS] at row 0.
        anchor: the anchor modality, x (B, 1+W, d).

    Returns:
        ModalRows (B, 1+W, d) whose real nodes are the anchor's (or, without anchor nodes,
        the first min(n, W) rows); [CLS] row and absent samples unchanged.
    """
    nodes, mask = rows.x[:, 1:], rows.valid[:, 1:]  # (B, N, d), (B, N)
    anchor_mask = anchor.valid[:, 1:]  # (B, W)
    width = anchor_mask.shape[1]
    n_source = mask.sum(1)  # (B,)
    n_anchor = anchor_mask.sum(1)
    present = n_source > 0
    n_target = torch.where(n_anchor > 0, n_anchor, n_source.clamp_max(width)) * present  # (B,) M per sample
    order = real_first(mask)
    compact = nodes.gather(1, order.unsqueeze(-1).expand_as(nodes))  # (B, N, d) real rows first
    resampled = area_weights(n_source, n_target, nodes.shape[1], width).to(compact.dtype) @ compact  # (B, W, d)
    positions = torch.where((n_anchor > 0).unsqueeze(1), real_first(anchor_mask),
                            torch.arange(width, device=mask.device).expand_as(anchor_mask))  # rank -> row
    placed = torch.zeros_like(resampled).scatter(1, positions.unsqueeze(-1).expand_as(resampled), resampled)
    ranks = torch.arange(width, device=mask.device).unsqueeze(0) < n_target.unsqueeze(1)  # (B, W)
    new_mask = torch.zeros_like(ranks).scatter(1, positions, ranks)  # (B, W)
    x = torch.cat([rows.x[:, :1], placed], dim=1)  # (B, 1+W, d)
    has = new_mask.any(1, keepdim=True)
    valid = torch.cat([torch.ones_like(has), new_mask], dim=1)
    support = torch.cat([~has, new_mask], dim=1)
    return ModalRows(x * valid.unsqueeze(-1), valid, support, has.squeeze(1))


def common_node_count(rows: dict[str, ModalRows], anchor: str) -> dict[str, ModalRows]:
    """Every modality on the anchor's M nodes (``node_count="common"``); the anchor unchanged."""
    return {name: seq if name == anchor else to_anchor_nodes(seq, rows[anchor]) for name, seq in rows.items()}
