"""Composition-level distribution constraint and Pair-wise Graph Fusion (Eq. 11-15).

- Eq. 11: entropic Sinkhorn plan ``H_m`` (B, 1+N_m, 1+N_t) between graph G_m (m = video,
  audio) and the text graph G_t; Euclidean cost ``C_m``, divided by its mean over the support
  pairs (detached) so that ``ot_eps`` does not depend on the feature scale; marginals uniform
  over each graph's support (``hcm.model.layers``), padded rows carry zero mass.
- Eq. 12, two readings (``transport_update``):
  ``literal``: ``G'_m = G_m + gamma_m H_m^T G_m`` on G_m's rows; needs the common node count
  (``hcm.model.nodes``), where row i of every modality is node i.
  ``text-anchored`` (hcm): ``G'_m = G_t + gamma_m diag(1/mu_t) H_m^T G_m``, the barycentric
  projection of G_m onto the text nodes, defined for any node counts.
  ``gamma_m`` is learnable (the adaptive coefficient).
- Eq. 13-14: M_c layers; the attention pattern comes from ``[G'_v (+) G'_a]`` (concatenated
  on the feature axis) as query and key, the values from the text graph, each layer followed
  by the feed-forward network of Eq. 14; the output is ``P^u`` (B, 1+N_t, d).
- Eq. 15: ``C' = C_v + C_a`` on common nodes, or with native node counts the costs moved onto
  the text rows ``C~_m = diag(1/mu_t) H_m^T C_m``; then (``cost_fusion``) ``P^C = C' P^u``
  (``product``, as written) or ``P^C = softmax(-s C') P^u`` (``softmax``, hcm; s learnable).

Without the constraint (variant ``no-cdc``) the plan is the independent coupling
``mu_m mu_t^T`` (Sinkhorn's limit for eps -> infinity) and Eq. 15 reduces to ``P^C = P^u``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hcm.model.layers import FeedForward, MaskedAttention, ModalRows, masked_softmax, support_weights
from hcm.model.ot import float32_island, sinkhorn


def euclidean_cost(x: Tensor, y: Tensor) -> Tensor:
    """(B, M, d), (B, N, d) -> (B, M, N) Euclidean distances, with a finite gradient at 0."""
    sq = (x * x).sum(-1).unsqueeze(2) + (y * y).sum(-1).unsqueeze(1) - 2.0 * x @ y.transpose(1, 2)
    return sq.clamp_min(1e-12).sqrt()


def normalized_cost(x: ModalRows, y: ModalRows) -> Tensor:
    """Eq. 11's cost over support pairs, scaled to mean 1 per sample; 0 on other pairs."""
    pairs = x.support.unsqueeze(2) & y.support.unsqueeze(1)  # (B, M, N)
    cost = euclidean_cost(x.x, y.x) * pairs
    mean = cost.sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)  # (B,)
    return cost / mean.detach().clamp_min(1e-6)[:, None, None]


@dataclass
class Transported:
    """Output of the composition-level transport."""

    graphs: dict[str, Tensor]  # m -> G'_m (B, 1+N_t, d): on the text rows, or G_m's rows (literal)
    plans: dict[str, Tensor]  # m -> H_m, (B, 1+N_m, 1+N_t)
    transferred_cost: Tensor | None  # C' (B, 1+N_t, 1+N_t); None without the constraint


class CompositionTransport(nn.Module):
    """Eq. 11-12 for every non-text modality, plus the transferred costs of Eq. 15."""

    def __init__(self, others: tuple[str, ...], gamma_init: float, use_ot: bool,
                 eps: float, n_iters: int, backend: str, update: str = "text-anchored",
                 common_nodes: bool = False) -> None:
        super().__init__()
        self.others = others
        self.update, self.common_nodes = update, common_nodes
        self.gamma = nn.ParameterDict({m: nn.Parameter(torch.tensor(float(gamma_init))) for m in self.others})
        self.use_ot = use_ot
        self.eps, self.n_iters, self.backend = eps, n_iters, backend

    def _plan(self, graph: ModalRows, text: ModalRows) -> tuple[Tensor, Tensor | None]:
        mu_m, mu_t = support_weights(graph.support), support_weights(text.support)  # (B, M), (B, N)
        if not self.use_ot:
            return mu_m.unsqueeze(2) * mu_t.unsqueeze(1), None  # (B, M, N) independent coupling
        with float32_island(graph.x.device):  # the cost and Sinkhorn stay float32 under autocast
            cost = normalized_cost(graph.float(), text.float())  # (B, M, N)
            plan = sinkhorn(cost, mu_m, mu_t, eps=self.eps, n_iters=self.n_iters, backend=self.backend)
        return plan, cost

    def forward(self, graphs: dict[str, ModalRows], anchor: str = "text") -> Transported:
        """Transport every other modality's graph onto the anchor (text) graph."""
        text = graphs[anchor]
        mu_t = support_weights(text.support)  # (B, 1+N_t)
        inv_mu_t = torch.where(mu_t > 0, 1.0 / mu_t.clamp_min(1e-12), torch.zeros_like(mu_t))
        updated, plans, costs = {}, {}, []
        for name in self.others:
            graph = graphs[name]
            plan, cost = self._plan(graph, text)
            bary = plan.transpose(1, 2) * inv_mu_t.unsqueeze(-1)  # (B, 1+N_t, 1+N_m) rows sum to 1
            if self.update == "literal":
                moved = plan.transpose(1, 2) @ graph.x  # (B, 1+M, d): H_m^T G_m
                updated[name] = (graph.x + self.gamma[name] * moved) * graph.valid.unsqueeze(-1)
            else:
                moved = bary @ graph.x  # (B, 1+N_t, d)
                updated[name] = (text.x + self.gamma[name] * moved) * text.valid.unsqueeze(-1)
            plans[name] = plan
            if cost is not None:
                costs.append(cost if self.common_nodes else bary @ cost)  # (B, 1+N_t, 1+N_t)
        transferred = torch.stack(costs).sum(0) if costs else None
        return Transported(updated, plans, transferred)


class FusionLayer(nn.Module):
    """One PGF layer: Eq. 13 attention (pattern from v/a, values from text) + Eq. 14 FFN."""

    def __init__(self, d_query: int, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_value = nn.LayerNorm(d_model)
        self.attn = MaskedAttention(d_model, num_heads, dropout, d_query=d_query)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, guide: Tensor, x: Tensor, support: Tensor) -> Tensor:
        x = x + self.drop(self.attn(guide, guide, self.norm_value(x), support))  # G_va
        return x + self.drop(self.ffn(self.norm_ffn(x)))  # P^u of this layer


class PairwiseGraphFusion(nn.Module):
    """Eq. 13-14 stacked M_c times: ``[G'_v (+) G'_a]`` guides attention over the text graph."""

    def __init__(self, n_guides: int, d_model: int, num_heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.norm_guide = nn.LayerNorm(n_guides * d_model)
        self.layers = nn.ModuleList(
            FusionLayer(n_guides * d_model, d_model, num_heads, dropout) for _ in range(layers)
        )
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, guides: list[Tensor], text: ModalRows) -> Tensor:
        """guides: G'_m (B, 1+N_t, d) each; text: G_t -> P^u (B, 1+N_t, d)."""
        guide = self.norm_guide(torch.cat(guides, dim=-1))  # (B, 1+N_t, k*d)
        x = text.x
        for layer in self.layers:
            x = layer(guide, x, text.support)
        return self.norm_out(x) * text.valid.unsqueeze(-1)


class CostGuidedFusion(nn.Module):
    """Eq. 15: ``P^C = C' P^u`` (``product``) or ``softmax(-s C') P^u`` (``softmax``) over the support."""

    def __init__(self, mode: str = "softmax") -> None:
        super().__init__()
        self.mode = mode
        self.log_scale = nn.Parameter(torch.zeros(())) if mode == "softmax" else None

    def forward(self, p_u: Tensor, transferred_cost: Tensor | None, support: Tensor) -> Tensor:
        if transferred_cost is None:
            return p_u * support.unsqueeze(-1)
        if self.mode == "product":
            keep = support.unsqueeze(2) & support.unsqueeze(1)  # (B, 1+M, 1+M)
            return ((transferred_cost * keep) @ p_u) * support.unsqueeze(-1)  # (B, 1+M, d): C' P^u
        scores = -self.log_scale.exp() * transferred_cost  # (B, 1+N_t, 1+N_t)
        weights = masked_softmax(scores, support.unsqueeze(1))
        return (weights @ p_u) * support.unsqueeze(-1)  # (B, 1+N_t, d)
