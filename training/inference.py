"""Running a network over a split: the model built from its factory, the evaluation loader, ``predict``.

The training loop validates with these, and ``hcm.training.evaluate`` and ``hcm predict``
evaluate with them, so a trained run predicts the same way in both places.
"""

from __future__ import annotations

import importlib
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from hcm.model import hcmnet  # noqa: F401  (registers the "hcmnet" model)
from hcm.model.config import ModelConfig
from hcm.model.registry import MODELS, ModelFactory
from hcm.training import TrainingError
from hcm.training.data import MODEL_KEYS, CacheDataset
from hcm.training.distributed import Dist, gather
from hcm.training.faults import ignore_stop_signals
from hcm.training.settings import TrainConfig

DEFAULT_MODEL = "hcmnet"  # build_model: checks the input widths, then HCMNet(cfg)


def find_factory(name: str) -> ModelFactory:
    """The model factory called ``name``: a registered model (``hcmnet``, see ``hcm.model.registry``),
    or ``"package.module:Name"`` of a model outside hcm (the module is imported, so its code runs)."""
    if ":" not in name:
        return MODELS.get(name)  # an unknown name: a usage error listing the registered models
    module, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:  # ValueError: an empty module name
        raise TrainingError(f"cannot import the model factory {name!r} ({error}); is the module installed?") from error


def factory_path(factory: str | Callable | None) -> str:
    """The name stored in config.json for a model factory: its registered name, else ``"module:Name"``."""
    if factory is None:
        return DEFAULT_MODEL
    if isinstance(factory, str):
        return factory
    return MODELS.name_of(factory) or f"{factory.__module__}:{factory.__qualname__}"


def eval_loader(data: CacheDataset, cfg: TrainConfig, d: Dist) -> DataLoader:
    """This rank's contiguous-free share ``rank::world`` of a split, in order, without padding."""
    share = Subset(data, list(range(d.rank, len(data), d.world)))
    return DataLoader(
        share, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False, collate_fn=data.collate(),
        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(0), worker_init_fn=ignore_stop_signals,
    )


def make_model(model_cfg: ModelConfig, factory: str | Callable | None = None) -> nn.Module:
    make = find_factory(factory or DEFAULT_MODEL) if isinstance(factory, str) or factory is None else factory
    return make(model_cfg)


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: batch[k].to(device, non_blocking=True) for k in MODEL_KEYS if k in batch}


@dataclass
class Predictions:
    """Model outputs over one split, in dataset order."""

    index: np.ndarray  # (N,)
    scores: np.ndarray  # (N,) regression scores or (N, C) logits
    loss: float  # mean loss over items
    features: np.ndarray | None = None  # (N, d) the model's ``.features``, when asked for


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, d: Dist, amp: torch.dtype | None = None,
            with_features: bool = False) -> Predictions:
    """Run ``model`` over ``loader`` (this rank's share) and gather every rank's outputs."""
    model.eval()
    index, scores, feats, loss_sum = [], [], [], 0.0
    for batch in loader:
        with autocast(d.device, amp):
            out = model(model_inputs(batch, d.device))
        index.append(batch["index"].numpy())
        scores.append(out.prediction.float().cpu().numpy())
        loss_sum += float(out.loss) * len(batch["index"])
        if with_features:
            feats.append(out.features.float().reshape(len(batch["index"]), -1).cpu().numpy())
    local = (index, scores, feats, loss_sum)
    parts = gather(d, local)
    all_index = np.concatenate([i for p in parts for i in p[0]])
    order = np.argsort(all_index, kind="stable")
    all_scores = np.concatenate([s for p in parts for s in p[1]])
    all_feats = np.concatenate([f for p in parts for f in p[2]]) if with_features else None
    total_loss = sum(p[3] for p in parts) / max(1, all_index.size)
    if all_scores.ndim == 2 and all_scores.shape[1] == 1:
        all_scores = all_scores[:, 0]
    return Predictions(all_index[order], all_scores[order], total_loss,
                       all_feats[order] if all_feats is not None else None)


def autocast(device: torch.device, amp: torch.dtype | None, cache_enabled: bool = True):
    """``torch.autocast`` to ``amp`` on ``device``; no change for full precision (``None``).
    ``cache_enabled=False`` inside a graph capture, where cached casts would outlive their graph."""
    if amp is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp, cache_enabled=cache_enabled)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``TrainConfig.amp`` setting on ``device``, or None for full precision."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if setting == "bf16" else torch.float16
