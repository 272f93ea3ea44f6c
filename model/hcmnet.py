"""HCMNet: hierarchical correlation modelling with semantic distribution constraints.

One network for every ablation of the paper; ``ModelConfig.variant`` and
``ModelConfig.modalities`` switch its parts, ``ModelConfig.reading`` and its switches choose
between the equations as written and hcm's readings (docs/model.md has the equation map):

    batch -> modality heads + encoders (Eq. 1-3)
          -> (node_count "common") video/audio rows resampled onto the anchor's M nodes
          -> atomic level: dynamic attention reasoning (Eq. 4-5), inner-product fusion P^A (Eq. 6)
          -> composition level: graphs + GCN (Eq. 8-10), OT (Eq. 11-12), PGF (Eq. 13-14),
             cost-guided fusion P^C (Eq. 15)
          -> prediction from [P^A ; P^C] and the objective (Eq. 7, 16, 17)

The network sees only the padded tensors of the batch contract (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from hcm.model.atomic import DynamicAttentionReasoning, inner_product_fusion
from hcm.model.composition import CompositionTransport, CostGuidedFusion, PairwiseGraphFusion
from hcm.model.config import CLASSIFICATION, ModelConfig
from hcm.model.graphs import ModalityGraphs
from hcm.model.layers import AttentionPool, ModalityEncoder, ModalRows
from hcm.model.losses import (
    atomic_contrastive_loss,
    atomic_cosine_loss,
    balanced_objective,
    contrastive_classes,
    task_loss,
)
from hcm.model.nodes import common_node_count
from hcm.model.ot import float32_island
from hcm.model.registry import MODELS


@dataclass
class HCMNetOutput:
    """What one forward pass returns."""

    prediction: Tensor  # (B,) score (regression) or (B, C) logits (classification)
    features: Tensor  # (B, F) pooled [P^A ; P^C], e.g. for t-SNE
    loss: Tensor | None = None  # the objective of Eq. 17 when a label was given
    losses: dict[str, Tensor] = field(default_factory=dict)  # "acl", "task", "total" (detached parts)
    plans: dict[str, Tensor] = field(default_factory=dict)  # m -> OT plan H_m (B, 1+N_m, 1+N_t)


class HCMNet(nn.Module):
    """The stage-two network. Build it from a :class:`ModelConfig` with input widths filled."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mods = cfg.modality_names
        self.anchor = mods[0]  # text; video in the V+A setting
        self.others = mods[1:]
        d = cfg.d_model
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(cfg.input_dims[m], d, cfg.num_heads, cfg.encoder_layers, cfg.dropout,
                               cross_frame=m != "text")
            for m in mods
        })
        use_acm, use_ccm = cfg.uses_acm, cfg.uses_ccm
        # Parts a variant does not use are None (absent), never built and left untrained.
        self.reasoning = (DynamicAttentionReasoning(self.others, d, cfg.m_ctn, cfg.cls_lambda, cfg.dropout)
                          if use_acm else None)
        self.pool_atomic = AttentionPool(d) if use_acm else None
        self.graphs = (ModalityGraphs(mods, d, cfg.m_gcn, cfg.eta, cfg.dropout, cfg.gcn_residual,
                                      cfg.graph_self_loops)
                       if cfg.uses_gcn else None)
        self.transport = (CompositionTransport(self.others, cfg.gamma_init, cfg.uses_ot, cfg.ot_eps,
                                               cfg.ot_iters, cfg.ot_backend, cfg.transport_update,
                                               cfg.node_count == "common", cfg.cost_scale, cfg.ot_mass)
                          if use_ccm else None)
        self.fusion = (PairwiseGraphFusion(len(self.others), d, cfg.num_heads, cfg.m_c, cfg.dropout,
                                           cfg.pgf_attention, cfg.pgf_ffn) if use_ccm else None)
        self.cost_fusion = CostGuidedFusion(cfg.cost_fusion) if cfg.uses_ot else None
        self.pool_composition = AttentionPool(d) if use_ccm else None
        blocks = int(use_acm) + int(use_ccm)
        self.classifier = nn.Sequential(
            nn.LayerNorm(blocks * d), nn.Linear(blocks * d, d), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(d, cfg.output_dim),
        )
        if isinstance(cfg.class_weights, str):
            raise ValueError(f"class_weights {cfg.class_weights!r} must be turned into numbers from the training "
                             "split before the model is built (the trainer does this)")
        weights = torch.tensor(cfg.class_weights) if cfg.class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        # Regression with output_mapping "label-range": the head's unit-scale output is mapped
        # onto the label range (centre + half width * output), so scores of [-3, 3] need no
        # large weights or a far-moved bias; "none" leaves the head's output as it is.
        mapped = cfg.task != CLASSIFICATION and cfg.label_range and cfg.output_mapping == "label-range"
        low, high = cfg.label_range if mapped else (-1.0, 1.0)
        self.register_buffer("output_affine", torch.tensor([(low + high) / 2, (high - low) / 2]),
                             persistent=False)

    def _check_batch(self, batch: dict[str, Tensor]) -> None:
        for name in self.encoders:
            for key in (name, f"{name}_mask"):
                if key not in batch:
                    raise KeyError(f"batch lacks {key!r}; HCMNet with modalities {self.cfg.modalities!r} "
                                   f"needs {name}, {name}_mask (docs/architecture.md)")
            x, mask = batch[name], batch[f"{name}_mask"]
            want = self.cfg.input_dims[name]
            if x.dim() != 3 or x.shape[-1] != want or mask.shape != x.shape[:2]:
                raise ValueError(f"batch[{name!r}] is {tuple(x.shape)} with mask {tuple(mask.shape)}; "
                                 f"expected (B, N, {want}) and (B, N) as set by ModelConfig.d_{name}")

    def encode(self, batch: dict[str, Tensor]) -> dict[str, ModalRows]:
        """Eq. 1-3: every modality as ``[CLS ; nodes]`` rows in d_m."""
        self._check_batch(batch)
        dtype = next(self.parameters()).dtype
        rows = {}
        for name, encoder in self.encoders.items():
            mask = batch[f"{name}_mask"].bool()
            x, valid, support = encoder(batch[name].to(dtype), mask)
            rows[name] = ModalRows(x, valid, support, mask.any(dim=1))
        if self.cfg.node_count == "common":
            rows = common_node_count(rows, self.anchor)  # every modality (B, 1+M, d), M = anchor nodes
        return rows

    def atomic(self, rows: dict[str, ModalRows]) -> tuple[dict[str, ModalRows], Tensor]:
        """Eq. 4-6: atomic features and the pooled P^A (B, d)."""
        atomic = self.reasoning(rows, self.anchor)
        p_a, support = inner_product_fusion(atomic, self.anchor, self.others, self.cfg.atomic_fusion == "tensor",
                                            self.cfg.atomic_pool)  # (B, k(1+N_t), d)
        return atomic, self.pool_atomic(p_a, support)

    def composition(self, rows: dict[str, ModalRows], text_adj: Tensor | None) -> tuple[Tensor, dict]:
        """Eq. 8-15: the pooled P^C (B, d) and the OT plans."""
        graphs = self.graphs(rows, text_adj) if self.graphs is not None else rows
        moved = self.transport(graphs, self.anchor)
        text = graphs[self.anchor]
        p_u = self.fusion([moved.graphs[m] for m in self.others], text)  # (B, 1+N_t, d)
        if self.cost_fusion is not None:
            p_c = self.cost_fusion(p_u, moved.transferred_cost, text.support)
        else:
            p_c = p_u * text.support.unsqueeze(-1)
        return self.pool_composition(p_c, text.support), moved.plans

    def forward(self, batch: dict[str, Tensor]) -> HCMNetOutput:
        """Predict from a padded batch; with ``batch["label"]`` also return the objective."""
        rows = self.encode(batch)
        pooled, plans, atomic = [], {}, rows
        if self.cfg.uses_acm:
            atomic, p_a = self.atomic(rows)
            pooled.append(p_a)
        if self.cfg.uses_ccm:
            p_c, plans = self.composition(atomic, batch.get("text_adj"))
            pooled.append(p_c)
        features = torch.cat(pooled, dim=-1)  # (B, F)
        prediction = self.classifier(features)
        if self.cfg.task != CLASSIFICATION:
            centre, half_width = self.output_affine
            prediction = centre + half_width * prediction.squeeze(-1)  # (B,) on the label range
        out = HCMNetOutput(prediction=prediction, features=features, plans=plans)
        if batch.get("label") is not None:
            out.loss, out.losses = self.objective(prediction, atomic, batch["label"])
        return out

    def objective(self, prediction: Tensor, atomic: dict[str, ModalRows], label: Tensor
                  ) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 7, 16, 17: the balanced objective and its detached parts, in float32 under autocast."""
        cfg = self.cfg
        name = "cce" if cfg.task == CLASSIFICATION else cfg.regression_loss
        with float32_island(prediction.device):
            prediction = prediction.float()
            task = task_loss(name, prediction, label.to(prediction.device), self.class_weights)
            acl = self.atomic_loss(atomic, label.to(prediction.device)) if cfg.uses_acl else None
            l2 = self.weight_penalty()
            ratio_range = cfg.balance_ratio_range if cfg.balance_clamp else None
            total = balanced_objective(acl, task + l2, ratio_range, cfg.objective_balance)
        zero = torch.zeros((), device=prediction.device)
        parts = {"acl": (acl if acl is not None else zero).detach(), "task": task.detach(), "l2": l2.detach(),
                 "total": total.detach()}
        return total, parts

    def weight_penalty(self) -> Tensor:
        """Eq. 16's ``xi ||theta||^2`` over every trainable parameter under ``weight_penalty``
        "l2-loss" (part of L_cce, so Eq. 17 balances it with the task loss); zero under
        "decoupled", where the trainer gives xi's role to AdamW's decoupled weight decay."""
        if self.cfg.weight_penalty != "l2-loss" or self.cfg.xi == 0:
            return torch.zeros((), device=next(self.parameters()).device)
        params = [p.float() for p in self.parameters() if p.requires_grad]
        if not params:
            return torch.zeros(())
        return self.cfg.xi * torch.stack(torch._foreach_norm(params)).pow(2).sum()  # one fused norm per device

    def atomic_loss(self, atomic: dict[str, ModalRows], label: Tensor) -> Tensor:
        """Eq. 7 in the form ``acl_form`` names, on the atomic features ``T~, V~, A~`` (float32)."""
        cfg, names = self.cfg, self.cfg.modality_names
        present = {m: atomic[m].present for m in names}
        if cfg.acl_form == "class-contrastive":
            classes = contrastive_classes(label, cfg.label_range, cfg.acl_bin_width)
            return atomic_contrastive_loss({m: atomic[m].float().pooled() for m in names}, present, classes,
                                           cfg.acl_temperature)
        if cfg.node_count == "common":  # node i of every modality on row i: the (M, d) matrices' cosine
            features = {m: atomic[m].x[:, 1:].float() * atomic[m].support[:, 1:, None] for m in names}
        else:
            features = {m: atomic[m].float().pooled() for m in names}
        return atomic_cosine_loss(features, present, as_printed=cfg.acl_form == "cosine-as-printed")


@MODELS.register("hcmnet")
def build_model(cfg: ModelConfig) -> HCMNet:
    """Build HCMNet after checking that the input widths of its modalities are known."""
    missing = [m for m in cfg.modality_names if cfg.input_dims[m] <= 0]
    if missing:
        raise ValueError(f"input widths unknown for {missing}; set d_text/d_video/d_audio "
                         "(ModelConfig.for_dataset fills them from the cache)")
    return HCMNet(cfg)
