"""Composition-level distribution constraint and Pair-wise Graph Fusion (Eq. 11-15).

- Eq. 11: entropic Sinkhorn plan ``H_m`` (B, 1+N_m, 1+N_t) between graph G_m (m = video,
  audio) and the text graph G_t; Euclidean cost ``C_m``, divided by its mean over the support
  pairs (detached) so that ``ot_eps`` does not depend on the feature scale; marginals uniform
  over each graph's support (``hcm.model.layers``), padded rows carry zero mass.
- Marginal masses of the literal Eq. 12 (``ot_mass``, a value the paper does not give):
  ``unit`` total mass 1 (``mu_t = 1/N_t`` per node) or ``node`` (mass 1 per text node: the
  plan is N_t times the unit-mass one, so on common nodes its rows and columns sum to 1 and
  ``H_m^T G_m`` is a weighted mean of G_m's rows, not 1/M of one). The solver and the
  returned plans use total mass 1; the text-anchored update divides by mu_t, so the masses
  do not change it.
- Eq. 12, two readings (``transport_update``):
  ``literal``: ``G'_m = G_m + gamma_m H_m^T G_m`` on G_m's rows; needs the common node count
  (``hcm.model.nodes``), where row i of every modality is node i.
  ``text-anchored`` (hcm): ``G'_m = G_t + gamma_m diag(1/mu_t) H_m^T G_m``, the barycentric
  projection of G_m onto the text nodes, defined for any node counts.
  ``gamma_m`` is learnable (the adaptive coefficient).
- Eq. 13-14: M_c layers; the attention pattern comes from ``[G'_v (+) G'_a]`` (concatenated
  on the feature axis) as query and key, the values from the text graph, each layer followed
  by the feed-forward network of Eq. 14; the output is ``P^u`` (B, 1+N_t, d).
- Eq. 13 (``pgf_attention``): ``shared-qk`` (paper) ``softmax(Q Q^T / sqrt(d)) W_v X`` with
  ``Q = W_q [G'_v (+) G'_a]``, one head, no norm, no skip; ``multihead`` (hcm) separate W_q and
  W_k, ``num_heads`` heads, pre-norm LayerNorms and a residual.
- Eq. 14 (``pgf_ffn``): ``linear`` (paper) ``W_1(W_2 x + b_2) + b_1`` at width d_m;
  ``gelu-residual`` (hcm) a 4 d_m GELU feed-forward network with pre-norm and residual.
- Eq. 15: ``C' = C_v + C_a`` on common nodes, or with native node counts the costs moved onto
  the text rows ``C~_m = diag(1/mu_t) H_m^T C_m``; ``C_m`` is the Euclidean cost as it is
  (``cost_scale`` ``raw``, paper) or the solver's unit-mean one (``unit-mean``, hcm); then
  (``cost_fusion``) ``P^C = C' P^u`` (``product``, as written) or ``P^C = softmax(-s C') P^u``
  (``softmax``, hcm; s learnable).

Without the constraint (variant ``no-cdc``) the plan is the independent coupling
``mu_m mu_t^T`` (Sinkhorn's limit for eps -> infinity) and Eq. 15 reduces to ``P^C = P^u``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hcm.model.config import OT_MASSES, checked_switch
from hcm.model.layers import FeedForward, MaskedAttention, ModalRows, masked_softmax, support_weights
from hcm.model.ot import float32_island, sinkhorn


def euclidean_cost(x: Tensor, y: Tensor) -> Tensor:
    """(B, M, d), (B, N, d) -> (B, M, N) Euclidean distances, with a finite gradient at 0."""
    sq = (x * x).sum(-1).unsqueeze(2) + (y * y).sum(-1).unsqueeze(1) - 2.0 * x @ y.transpose(1, 2)
    return sq.clamp_min(1e-12).sqrt()


def support_pairs(x: ModalRows, y: ModalRows) -> Tensor:
    """(B, M, N) True where both rows are in their graph's support."""
    return x.support.unsqueeze(2) & y.support.unsqueeze(1)


def support_cost(x: ModalRows, y: ModalRows, pairs: Tensor) -> Tensor:
    """Eq. 11's Euclidean cost over the support ``pairs``, 0 on other pairs, (B, M, N)."""
    return euclidean_cost(x.x, y.x) * pairs


def unit_mean(cost: Tensor, pairs: Tensor) -> Tensor:
    """A support cost divided per sample by its (detached) mean over the support ``pairs``."""
    mean = cost.sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)  # (B,)
    return cost / mean.detach().clamp_min(1e-6)[:, None, None]



@dataclass
class Transported:
    """Output of the composition-level transport."""

    graphs: dict[str, Tensor]  # m -> G'_m (B, 1+N_t, d): on the text rows, or G_m's rows (literal)
    plans: dict[str, Tensor]  # m -> H_m with total mass 1, (B, 1+N_m, 1+N_t)
    transferred_cost: Tensor | None  # C' (B, 1+N_t, 1+N_t); None without the constraint


class CompositionTransport(nn.Module):
    """Eq. 11-12 for every non-text modality, plus the transferred costs of Eq. 15."""

    def __init__(self, others: tuple[str, ...], gamma_init: float, use_ot: bool,
                 eps: float, n_iters: int, backend: str, update: str = "text-anchored",
                 common_nodes: bool = False, cost_scale: str = "unit-mean", mass: str = "unit") -> None:
        super().__init__()
        if mass not in OT_MASSES:
            raise ValueError(f"mass must be one of {OT_MASSES}, got {mass!r}")
        self.others, self.cost_scale, self.node_mass = others, checked_switch("cost_scale", cost_scale), mass == "node"
        self.update, self.common_nodes = checked_switch("transport_update", update), common_nodes
        self.gamma = nn.ParameterDict({m: nn.Parameter(torch.tensor(float(gamma_init))) for m in self.others})
        self.use_ot = use_ot
        self.eps, self.n_iters, self.backend = eps, n_iters, backend

    def _plan(self, graph: ModalRows, text: ModalRows) -> tuple[Tensor, Tensor | None]:
        """The plan H_m (B, M, N) and the cost C_m that Eq. 15 fuses (None without the constraint)."""
        mu_m, mu_t = support_weights(graph.support), support_weights(text.support)  # (B, M), (B, N)
        if not self.use_ot:
            return mu_m.unsqueeze(2) * mu_t.unsqueeze(1), None  # (B, M, N) independent coupling
        with float32_island(graph.x.device):  # the cost and Sinkhorn stay float32 under autocast
            graph, text = graph.float(), text.float()
            pairs = support_pairs(graph, text)  # (B, M, N)
            raw = support_cost(graph, text, pairs)
            cost = unit_mean(raw, pairs)  # the solver's eps is set for unit-mean costs
            plan = sinkhorn(cost, mu_m, mu_t, eps=self.eps, n_iters=self.n_iters, backend=self.backend)
        return plan, raw if self.cost_scale == "raw" else cost

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
                if self.node_mass:  # mass 1 per text node: N_t times the unit-mass plan
                    plan_mass = plan * text.support.sum(1).to(plan.dtype)[:, None, None]  # (B,) -> (B, 1, 1)
                else:
                    plan_mass = plan
                moved = plan_mass.transpose(1, 2) @ graph.x  # (B, 1+M, d): H_m^T G_m
                updated[name] = (graph.x + self.gamma[name] * moved) * graph.valid.unsqueeze(-1)
            else:
                moved = bary @ graph.x  # (B, 1+N_t, d)
                updated[name] = (text.x + self.gamma[name] * moved) * text.valid.unsqueeze(-1)
            plans[name] = plan
            if cost is not None:
                costs.append(cost if self.common_nodes else bary @ cost)  # (B, 1+N_t, 1+N_t)
        transferred = torch.stack(costs).sum(0) if costs else None
        return Transported(updated, plans, transferred)


class SharedQKAttention(nn.Module):
    """Eq. 13 as written: ``softmax(Q Q^T / sqrt(d)) W_v X`` with ``Q = K = W_q guide``, one head."""

    def __init__(self, d_query: int, d_model: int) -> None:
        super().__init__()
        self.q = nn.Linear(d_query, d_model)  # W_q, for query and key alike
        self.v = nn.Linear(d_model, d_model)  # W_v

    def forward(self, guide: Tensor, x: Tensor, support: Tensor) -> Tensor:
        """guide (B, N, dq), x (B, N, d), support (B, N) -> G_va (B, N, d)."""
        q = self.q(guide)  # (B, N, d)
        scores = q @ q.transpose(1, 2) / q.shape[-1] ** 0.5  # (B, N, N), symmetric
        return masked_softmax(scores, support.unsqueeze(1)) @ self.v(x)


class LinearFeedForward(nn.Sequential):
    """Eq. 14 as written: ``W_1(W_2 x + b_2) + b_1``, two linear maps at width d_m."""

    def __init__(self, d_model: int) -> None:
        super().__init__(nn.Linear(d_model, d_model), nn.Linear(d_model, d_model))


class FusionLayer(nn.Module):
    """One PGF layer: Eq. 13 attention (pattern from v/a, values from text) + Eq. 14.

    ``attention`` ``multihead`` (hcm): pre-norm multi-head attention with separate W_q, W_k and a
    residual; ``shared-qk`` (paper): :class:`SharedQKAttention`, its output replaces x.
    ``ffn`` ``gelu-residual`` (hcm): pre-norm 4 d_m GELU network with a residual; ``linear``
    (paper): :class:`LinearFeedForward`, its output replaces x.
    """

    def __init__(self, d_query: int, d_model: int, num_heads: int, dropout: float,
                 attention: str = "multihead", ffn: str = "gelu-residual") -> None:
        super().__init__()
        self.multihead = checked_switch("pgf_attention", attention) == "multihead"
        self.residual_ffn = checked_switch("pgf_ffn", ffn) == "gelu-residual"
        if self.multihead:
            self.norm_value = nn.LayerNorm(d_model)
            self.attn = MaskedAttention(d_model, num_heads, dropout, d_query=d_query)
        else:
            self.attn = SharedQKAttention(d_query, d_model)
        if self.residual_ffn:
            self.norm_ffn = nn.LayerNorm(d_model)
            self.ffn = FeedForward(d_model, dropout)
        else:
            self.ffn = LinearFeedForward(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, guide: Tensor, x: Tensor, support: Tensor) -> Tensor:
        if self.multihead:
            x = x + self.drop(self.attn(guide, guide, self.norm_value(x), support))  # G_va
        else:
            x = self.drop(self.attn(guide, x, support))  # G_va
        if self.residual_ffn:
            return x + self.drop(self.ffn(self.norm_ffn(x)))  # P^u of this layer
        return self.drop(self.ffn(x))


class PairwiseGraphFusion(nn.Module):
    """Eq. 13-14 stacked M_c times: ``[G'_v (+) G'_a]`` guides attention over the text graph.

    With ``attention`` ``multihead`` the guide and the output pass a LayerNorm (hcm); with
    ``shared-qk`` neither does, as the paper writes it.
    """

    def __init__(self, n_guides: int, d_model: int, num_heads: int, layers: int, dropout: float,
                 attention: str = "multihead", ffn: str = "gelu-residual") -> None:
        super().__init__()
        normed = checked_switch("pgf_attention", attention) == "multihead"
        self.norm_guide = nn.LayerNorm(n_guides * d_model) if normed else nn.Identity()
        self.layers = nn.ModuleList(
            FusionLayer(n_guides * d_model, d_model, num_heads, dropout, attention, ffn) for _ in range(layers)
        )
        self.norm_out = nn.LayerNorm(d_model) if normed else nn.Identity()

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
        self.mode = checked_switch("cost_fusion", mode)
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
