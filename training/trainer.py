"""The one training loop of hcm: every variant and dataset goes through ``train``.

- AdamW with a per-step schedule (linear warm-up, then cosine or constant), gradient clipping.
- The best epoch is picked on the validation split only, by the dataset's key metric
  (MOSEI/sample: MAE, lower is better; MELD/IEMOCAP: weighted F1); early stopping with patience.
- ``checkpoints/last.pt`` after every epoch and ``best.pt`` on improvement, written atomically.
  A checkpoint holds model, optimizer, scheduler and grad-scaler states, every RNG state, the
  epoch and the best-so-far, so a resumed run ends with the same weights and metrics as an
  uninterrupted one. The shuffling order depends only on (seed, epoch).
- Distributed data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU): a DistributedSampler
  splits each global batch over the ranks, validation is sharded and gathered, rank 0 writes.
- Mixed precision on GPU (bf16, or fp16 with a grad scaler). A non-finite loss stops the run
  with the epoch and step; the last good checkpoint stays in place.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from hcm.core.configs import check_keys
from hcm.core.files import json_safe, write_json
from hcm.core.names import CLASSIFICATION
from hcm.model.config import INVERSE_FREQUENCY, ModelConfig
from hcm.training import TrainingError
from hcm.training import metrics as M
from hcm.training.checkpoints import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from hcm.training.data import MODEL_KEYS, CacheDataset, DataConfig, read_cache_meta, stream_statistics
from hcm.training.distributed import Dist, all_ranks_finite, barrier, gather, setup_distributed
from hcm.training.runs import RunLogger, RunPaths, epoch_progress
from hcm.training.settings import DatasetFacts, load_dataset_facts

log = logging.getLogger(__name__)
DEFAULT_MODEL = "hcm.model.hcmnet:build_model"  # checks the input widths, then HCMNet(cfg)
METRIC_ALIASES = {"w_f1": "weighted_f1", "wf1": "weighted_f1", "f1_weighted": "weighted_f1", "acc": "accuracy",
                  "acc_7": "acc7", "acc_2": "acc2_non0", "acc2": "acc2_non0", "f1": "f1_non0"}


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Optimisation settings (paper: AdamW, lr 2e-4, batch 64, 100 epochs).

    ``batch_size`` is the global batch: under DDP each of the W ranks takes batch_size / W.
    """

    epochs: int = 100  # maximum number of epochs
    batch_size: int = 64  # global batch size
    optimizer: str = "adamw"  # the paper's optimiser; the only one offered
    lr: float = 2e-4  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    scheduler: str = "cosine"  # "cosine" decay to 0 or "constant", after warm-up
    warmup_epochs: float = 0.0  # linear warm-up length in epochs
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    patience: int = 10  # epochs without validation improvement before stopping; 0 disables
    seed: int = 0  # seeds model init, dropout and the shuffling order
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: str = "auto"  # "auto" (bf16 on GPUs that have it, else fp16; off on CPU), "bf16", "fp16", "off"
    num_workers: int = 0  # DataLoader worker processes
    in_memory: bool = False  # load the cache into memory (small caches)
    eval_batch_size: int = 0  # batch size for validation/evaluation; 0 = batch_size
    max_text_tokens: int | None = None  # cap on text nodes per item
    max_frames: int | None = None  # cap on video nodes per item
    max_audio: int | None = None  # cap on audio nodes per item
    standardise_streams: bool = True  # scale each feed stream by the train split's mean/std

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0; got {self.epochs}, {self.batch_size}, {self.lr}")
        if self.optimizer != "adamw":
            raise ValueError(f"optimizer {self.optimizer!r} is not offered; hcm trains with 'adamw' as the paper does")
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {self.scheduler!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off; got {self.amp!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "TrainConfig":
        check_keys(cls, data, source)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """What a finished ``train`` call reports."""

    run_dir: Path
    key_metric: str
    higher_is_better: bool
    best_epoch: int
    best_value: float
    best_valid: dict[str, float]
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- setup


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if setting == "bf16" else torch.float16


def import_factory(path: str) -> Callable[[ModelConfig], nn.Module]:
    """``"package.module:Name"`` -> the object (the model class or a factory function)."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise TrainingError(f"cannot import the model factory {path!r} ({error}); is the module installed?") from error


def factory_path(factory: str | Callable | None) -> str:
    """The importable ``"module:Name"`` of a model factory (stored in config.json)."""
    if factory is None:
        return DEFAULT_MODEL
    return factory if isinstance(factory, str) else f"{factory.__module__}:{factory.__qualname__}"


def key_metric_of(facts: DatasetFacts) -> str:
    name = facts.key_metric.lower().replace("-", "_")
    return METRIC_ALIASES.get(name, name)


def data_config(facts: DatasetFacts, cfg: TrainConfig, cache_dir: Path) -> DataConfig:
    """How items become examples; with ``standardise_streams``, the train split's stream statistics."""
    streams = {m: list(s) for m, s in facts.streams.items()}
    stats = None
    if cfg.standardise_streams:
        stats = stream_statistics(cache_dir, [name for names in streams.values() for name in names])
    return DataConfig(streams=streams, max_text_tokens=cfg.max_text_tokens, max_frames=cfg.max_frames,
                      max_audio=cfg.max_audio, stream_stats=stats)


# --------------------------------------------------------------------------- loaders and model


def train_loader(data: CacheDataset, cfg: TrainConfig, d: Dist, epoch: int) -> DataLoader:
    """Shuffled loader of this rank's share; the order depends only on (seed, epoch)."""
    if cfg.batch_size % d.world:
        raise TrainingError(f"batch size {cfg.batch_size} is not divisible by the {d.world} processes; change --batch-size")
    sampler = DistributedSampler(data, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return DataLoader(
        data, batch_size=cfg.batch_size // d.world, sampler=sampler, collate_fn=data.collate(),
        num_workers=cfg.num_workers, generator=generator, pin_memory=d.device.type == "cuda",
    )


def eval_loader(data: CacheDataset, cfg: TrainConfig, d: Dist) -> DataLoader:
    """This rank's contiguous-free share ``rank::world`` of a split, in order, without padding."""
    share = Subset(data, list(range(d.rank, len(data), d.world)))
    return DataLoader(
        share, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False, collate_fn=data.collate(),
        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(0),
    )


def make_model(model_cfg: ModelConfig, factory: str | Callable | None = None) -> nn.Module:
    make = import_factory(factory) if isinstance(factory, str) else (factory or import_factory(DEFAULT_MODEL))
    return make(model_cfg)


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: batch[k].to(device, non_blocking=True) for k in MODEL_KEYS if k in batch}


# --------------------------------------------------------------------------- prediction


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
        with _autocast(d.device, amp):
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


def _autocast(device: torch.device, amp: torch.dtype | None):
    if amp is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp)


# --------------------------------------------------------------------------- optimisation


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step LR multiplier: linear warm-up, then cosine decay to 0 (or constant)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Loop:
    """Everything one training run carries from epoch to epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    epoch: int = 0  # epochs finished
    best_value: float | None = None
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train_one_epoch(loop: Loop, loader: DataLoader, cfg: TrainConfig, d: Dist, paths: RunPaths,
                    on_step: Callable[[float], None]) -> dict[str, float]:
    """One pass over this rank's share; returns the item-weighted mean of every loss term."""
    loop.model.train()
    sums: dict[str, float] = {}
    count = 0
    for step, batch in enumerate(loader, start=1):
        with _autocast(d.device, loop.amp):
            out = loop.model(model_inputs(batch, d.device))
        if not all_ranks_finite(out.loss, d):
            raise NonFiniteLossError(
                f"the loss became {float(out.loss.detach())} at epoch {loop.epoch + 1}, step {step}; training stopped. "
                f"The last good checkpoint is kept: {paths.last if loop.epoch else 'none (first epoch)'}. "
                f"Try a lower --lr, --set amp=off, or --set grad_clip=1.0"
            )
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(out.loss).backward()
        if cfg.grad_clip > 0:
            loop.scaler.unscale_(loop.optimizer)
            nn.utils.clip_grad_norm_(loop.model.parameters(), cfg.grad_clip)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        loop.scheduler.step()
        n = len(batch["index"])
        count += n
        terms = {"loss": out.loss, **{f"loss_{k}": v for k, v in (getattr(out, "losses", None) or {}).items()}}
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(torch.as_tensor(value).detach()) * n
        on_step(float(out.loss.detach()))
    return _reduce_means(sums, count, d)


def _reduce_means(sums: dict[str, float], count: int, d: Dist) -> dict[str, float]:
    names = sorted(sums)
    values = torch.tensor([sums[k] for k in names] + [float(count)], dtype=torch.float64)
    if d.world > 1:
        dist.all_reduce(values)
    total = max(1.0, float(values[-1]))
    return {f"train_{k}": float(v) / total for k, v in zip(names, values[:-1].tolist())}


def checkpoint_state(loop: Loop, rng: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """What ``last.pt``/``best.pt`` hold: every state a resumed run needs."""
    module = loop.model.module if hasattr(loop.model, "module") else loop.model
    return {
        "model": module.state_dict(), "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(), "scaler": loop.scaler.state_dict(),
        "epoch": loop.epoch, "best_value": loop.best_value, "best_epoch": loop.best_epoch,
        "best_valid": loop.best_valid, "bad_epochs": loop.bad_epochs, "history": loop.history,
        "rng": rng, **extra,
    }


def restore(loop: Loop, state: dict[str, Any], d: Dist) -> None:
    """Put a loop back where ``state`` left it, this rank's RNG included."""
    module = loop.model.module if hasattr(loop.model, "module") else loop.model
    module.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.scaler.load_state_dict(state["scaler"])
    for name in ("epoch", "best_value", "best_epoch", "best_valid", "bad_epochs", "history"):
        setattr(loop, name, state[name])
    rng = state["rng"]
    if len(rng) != d.world:
        log.warning("checkpoint holds RNG states of %d processes, this run has %d; the resumed run "
                    "will not repeat an uninterrupted one exactly", len(rng), d.world)
    set_rng_state(rng[d.rank % len(rng)])


# --------------------------------------------------------------------------- the run


@dataclass
class Setup:
    """The data, facts and configurations a run is built from."""

    train_data: CacheDataset
    valid_data: CacheDataset
    facts: DatasetFacts
    data_cfg: DataConfig
    model_cfg: ModelConfig
    key: str


def prepare(cache_dir: Path, cfg: TrainConfig, model_cfg: ModelConfig | None,
            facts: DatasetFacts | None) -> Setup:
    """Open the train and valid splits, check them against the dataset facts, size the model."""
    probe, splits = read_cache_meta(cache_dir)
    facts = facts or load_dataset_facts(probe.dataset)
    if probe.task != facts.task:
        raise TrainingError(f"cache {cache_dir} is a {probe.task} cache but dataset {facts.name!r} is {facts.task}")
    if facts.task == CLASSIFICATION and list(probe.classes or []) != list(facts.class_names):
        raise TrainingError(f"cache {cache_dir} has classes {probe.classes}, dataset {facts.name!r} expects "
                            f"{list(facts.class_names)}; re-extract the cache or fix configs/datasets/{facts.name}.json")
    for split in ("train", "valid"):
        if not splits.get(split):
            raise TrainingError(f"cache {cache_dir} has no {split!r} items (splits: {splits}); hcm picks the best "
                                f"epoch on the validation split only, so a cache needs train and valid items")
    data_cfg = data_config(facts, cfg, cache_dir)
    train_data = CacheDataset(cache_dir, "train", data_cfg, in_memory=cfg.in_memory)
    valid_data = CacheDataset(cache_dir, "valid", data_cfg, in_memory=cfg.in_memory)
    model_cfg = (model_cfg or ModelConfig()).for_dataset(facts, train_data.dims)
    model_cfg = with_class_weights(model_cfg, train_data.labels)
    return Setup(train_data, valid_data, facts, data_cfg, model_cfg, key_metric_of(facts))


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
    """Eq. 16's class weights ``n / (k n_c)`` over the k classes present in ``labels``.

    sklearn's ``"balanced"`` weights; a class absent from the training split gets weight 1
    (it is never a target there, so its weight does not enter the training loss).
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).astype(np.int64)
    present = np.unique(labels)
    weights = np.ones(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return tuple(float(w) for w in weights)


def with_class_weights(model_cfg: ModelConfig, train_labels: np.ndarray) -> ModelConfig:
    """Turn ``class_weights="inverse_frequency"`` into numbers from the training split.

    The run's config.json records the numbers (what the run used); a regression task takes
    no class weights, so the setting is dropped there.
    """
    if model_cfg.class_weights != INVERSE_FREQUENCY:
        return model_cfg
    if model_cfg.task != CLASSIFICATION:
        return dataclasses.replace(model_cfg, class_weights=None)
    weights = inverse_frequency_weights(train_labels, model_cfg.num_classes)
    log.info("class weights (inverse frequency over the training split): %s", [round(w, 3) for w in weights])
    return dataclasses.replace(model_cfg, class_weights=weights)


def run_config(setup: Setup, cfg: TrainConfig, cache_dir: Path, factory: str, d: Dist) -> dict[str, Any]:
    """Everything needed to repeat or evaluate a run (written to ``config.json``)."""
    meta = setup.train_data.meta
    return {
        "dataset": meta.dataset, "profile": meta.profile, "task": meta.task, "classes": meta.classes,
        "recipe_hash": meta.recipe_hash,
        "cache": str(Path(cache_dir).resolve()), "key_metric": setup.key,
        "higher_is_better": setup.facts.higher_is_better, "train": cfg.to_dict(),
        "model": setup.model_cfg.to_dict(), "reading_departures": setup.model_cfg.departures(),
        "data": dataclasses.asdict(setup.data_cfg),
        "facts": json_safe(dataclasses.asdict(setup.facts)), "model_factory": factory,
        "world_size": d.world, "torch": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def new_loop(setup: Setup, cfg: TrainConfig, d: Dist, factory: str | Callable, steps_per_epoch: int) -> Loop:
    seed_everything(cfg.seed)
    model = make_model(setup.model_cfg, factory).to(d.device)
    seed_everything(cfg.seed + 1000 * d.rank)  # dropout differs per rank, init does not
    if d.world > 1:
        ids = [d.device.index] if d.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = amp_dtype(cfg.amp, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=amp == torch.float16)
    return Loop(model, optimizer, make_scheduler(optimizer, cfg, steps_per_epoch), scaler, amp)


def validate(loop: Loop, loader: DataLoader, setup: Setup, d: Dist) -> dict[str, float]:
    """Validation loss and metrics, prefixed ``valid_``."""
    preds = predict(loop.model, loader, d, loop.amp)
    labels = setup.valid_data.labels[preds.index]
    values = M.compute_metrics(setup.facts.task, preds.scores, labels, setup.facts.class_names)
    return {"valid_loss": preds.loss, **{f"valid_{k}": v for k, v in values.items()}}


def finish_epoch(loop: Loop, row: dict[str, Any], setup: Setup, cfg: TrainConfig, d: Dist,
                 paths: RunPaths, extra: dict[str, Any]) -> bool:
    """Record the epoch, update the best, write checkpoints; True when early stopping fires."""
    loop.epoch += 1
    value = row[f"valid_{setup.key}"]
    improved = M.is_better(value, loop.best_value, setup.facts.higher_is_better)
    if improved:
        loop.best_value, loop.best_epoch, loop.bad_epochs = value, loop.epoch, 0
        loop.best_valid = {k[len("valid_"):]: v for k, v in row.items() if k.startswith("valid_")}
    else:
        loop.bad_epochs += 1
    loop.history.append({"epoch": loop.epoch, **row, "best": improved})
    rng = gather(d, rng_state())
    if d.main:
        state = checkpoint_state(loop, rng, extra)
        save_checkpoint(paths.last, state)
        if improved:
            save_checkpoint(paths.best, state)
    barrier(d)
    return cfg.patience > 0 and loop.bad_epochs >= cfg.patience


def run_epochs(loop: Loop, setup: Setup, cfg: TrainConfig, d: Dist, paths: RunPaths,
               callbacks: Sequence[Callable[[int, dict], None]], show: bool, extra: dict[str, Any]) -> bool:
    """Train from ``loop.epoch`` to ``cfg.epochs``; True when stopped early."""
    logger = RunLogger(paths, d.main, loop.epoch)
    valid = eval_loader(setup.valid_data, cfg, d)
    try:
        with epoch_progress(show and d.main) as bar:
            while loop.epoch < cfg.epochs:
                loader = train_loader(setup.train_data, cfg, d, loop.epoch)
                task = bar.add_task(f"epoch {loop.epoch + 1}/{cfg.epochs}", total=len(loader), loss="-", valid="")
                on_step = lambda loss: bar.update(task, advance=1, loss=f"{loss:.4f}")  # noqa: E731
                row = train_one_epoch(loop, loader, cfg, d, paths, on_step)
                row.update(validate(loop, valid, setup, d))
                row["lr"] = loop.optimizer.param_groups[0]["lr"]
                stop = finish_epoch(loop, row, setup, cfg, d, paths, extra)
                bar.update(task, valid=f"valid {setup.key} {row[f'valid_{setup.key}']:.4f}")
                logger.epoch(loop.history)
                for callback in callbacks:
                    callback(loop.epoch, row)
                if stop:
                    log.info("early stopping after epoch %d: no better valid %s for %d epochs",
                             loop.epoch, setup.key, cfg.patience)
                    return True
    finally:
        logger.close(loop.history, setup.key)
    return False


def train(cache_dir: str | os.PathLike, run_dir: str | os.PathLike, train_cfg: TrainConfig,
          model_cfg: ModelConfig | None = None, *, facts: DatasetFacts | None = None,
          model_factory: str | Callable[[ModelConfig], nn.Module] | None = None, resume: bool = False,
          callbacks: Sequence[Callable[[int, dict], None]] = (), progress: bool = True) -> RunResult:
    """Train HCMNet (or ``model_factory``'s model) on a cache; write the run into ``run_dir``.

    Args:
        cache_dir: feature cache with train and valid splits.
        run_dir: the run folder (created; with ``resume`` the interrupted run's folder).
        train_cfg / model_cfg: settings; the model's input widths and task come from the cache.
        facts: dataset facts (default: ``configs/datasets/<cache dataset>.json``).
        model_factory: ``"module:Name"`` or a callable taking the ModelConfig (default HCMNet).
        resume: continue from ``checkpoints/last.pt`` of ``run_dir``.
        callbacks: called as ``callback(epoch, row)`` after each epoch is saved.
        progress: show the per-epoch progress bars.
    """
    d = setup_distributed(train_cfg.device)
    paths = RunPaths(Path(run_dir))
    cache_dir = Path(cache_dir)
    if not resume and paths.config.exists():
        raise TrainingError(f"{paths.root} already holds a run; continue it with `hcm train --resume --run {paths.root}`")
    setup = prepare(cache_dir, train_cfg, model_cfg, facts)
    factory = model_factory if model_factory is not None else DEFAULT_MODEL
    config = run_config(setup, train_cfg, cache_dir, factory_path(factory), d)
    steps = len(train_loader(setup.train_data, train_cfg, d, 0))
    loop = new_loop(setup, train_cfg, d, factory, steps)
    if resume and paths.last.is_file():
        restore(loop, load_checkpoint(paths.last, d.device), d)
        log.info("resuming %s after epoch %d", paths.root, loop.epoch)
    elif d.main:
        paths.root.mkdir(parents=True, exist_ok=True)
        write_json(paths.config, config)
    extra = {"config": config}
    stopped = run_epochs(loop, setup, train_cfg, d, paths, callbacks, progress, extra)
    return RunResult(paths.root, setup.key, setup.facts.higher_is_better, loop.best_epoch,
                     loop.best_value if loop.best_value is not None else math.nan, loop.best_valid,
                     loop.epoch, stopped, loop.history)
