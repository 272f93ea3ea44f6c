"""A tiny stand-in for HCMNet with the same batch and output contract, for trainer tests.

Masked mean of each modality's rows -> linear head. The loss is per-item (L1 or cross-entropy),
so a global batch split over DDP ranks gives the same gradient as one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hcm_tiny_cache import CLASSES, STREAMS
from torch import nn

from hcm.model.config import ModelConfig
from hcm.training.settings import DatasetFacts


@dataclass
class TinyOutput:
    prediction: torch.Tensor
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    features: torch.Tensor | None = None


class TinyNet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = {"text": cfg.d_text, "video": cfg.d_video, "audio": cfg.d_audio}
        self.proj = nn.ModuleDict({m: nn.Linear(d, 8) for m, d in dims.items()})
        self.head = nn.Linear(24, cfg.output_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> TinyOutput:
        pooled = []
        for m, proj in self.proj.items():
            mask = batch[f"{m}_mask"].unsqueeze(-1).float()  # (B, N, 1)
            mean = (batch[m] * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)
            pooled.append(torch.tanh(proj(mean)))  # (B, 8)
        features = torch.cat(pooled, dim=-1)  # (B, 24)
        out = self.head(features)
        if self.cfg.task == "regression":
            prediction = out[:, 0]  # (B,)
            task_loss = F.l1_loss(prediction, batch["label"])
        else:
            prediction = out  # (B, C)
            task_loss = F.cross_entropy(out, batch["label"])
        reg = 1e-3 * features.pow(2).mean()
        return TinyOutput(prediction, task_loss + reg, {"task": task_loss, "reg": reg}, features)


def tiny_facts(task: str = "regression") -> DatasetFacts:
    regression = task == "regression"
    return DatasetFacts(
        name="sample", task=task, num_classes=0 if regression else len(CLASSES),
        class_names=() if regression else tuple(CLASSES), key_metric="mae" if regression else "weighted_f1",
        higher_is_better=not regression, label_range=(-3.0, 3.0) if regression else None,
        streams={m: tuple(s) for m, s in STREAMS.items()},
    )
