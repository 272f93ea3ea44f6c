"""The one training loop of hcm: every variant and dataset goes through ``train``.

- AdamW with a per-step schedule (linear warm-up, then cosine or constant), gradient clipping.
- The best epoch is picked on the validation split only, by the dataset's key metric
  (MOSEI/sample: MAE, lower is better; MELD/IEMOCAP: weighted F1); early stopping with patience.
- ``checkpoints/last.pt`` after every epoch and ``best.pt`` on improvement, written atomically;
  on SIGTERM/SIGINT also mid-epoch, after the step in progress (``hcm.training.faults``).
  ``best.pt`` holds only what evaluation needs (weights, epoch, run config). ``last.pt`` holds
  model, optimizer, scheduler and grad-scaler states, every RNG state, the epoch, the position
  in the epoch and the loss sums so far, and the best-so-far, so a resumed run ends with the
  same weights and metrics as an uninterrupted one. The shuffling order depends only on
  (seed, epoch); a resumed epoch skips the batches already done.
- Distributed data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU): a DistributedSampler
  splits each global batch over the ranks, validation is sharded and gathered, rank 0 writes.
- Mixed precision on GPU (bf16, or fp16 with a grad scaler). A non-finite loss or gradient
  stops the run with the epoch, step and item ids, after saving the state before that batch;
  ``skip_nonfinite`` skips up to that many such batches instead (each logged).

The step itself (forward, backward, clipping, AdamW; eager, or as CUDA graph replays under
``step_graph``): ``hcm.training.step``.

Settings (``TrainConfig``): ``hcm.training.settings``; checkpoint state (``Loop``, ``save_last``,
``resume_from``): ``hcm.training.checkpoints``; model factory, ``predict``: ``hcm.training.inference``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from hcm.cache.manifest import MANIFEST
from hcm.cache.schema import CacheError
from hcm.core.files import json_safe, write_json
from hcm.core.names import CLASSIFICATION
from hcm.core.provenance import provenance
from hcm.model.config import ModelConfig
from hcm.training import TrainingError
from hcm.training import metrics as M
from hcm.training.checkpoints import Loop, resume_from, rng_state, save_last, seed_everything
from hcm.training.data import CacheDataset, CacheInfo, DataConfig, cache_info, data_config
from hcm.training.distributed import Dist, gather, max_over_ranks, setup_distributed
from hcm.training.faults import NonFiniteLossError, StopSignals, ignore_stop_signals, interrupted, resume_command
from hcm.training.inference import (
    DEFAULT_MODEL,
    amp_dtype,
    eval_loader,
    factory_path,
    make_model,
    predict,
)
from hcm.training.runs import RunLogger, RunPaths, check_run_folder, check_run_folder_kept, epoch_progress
from hcm.training.settings import DatasetFacts, TrainConfig, facts_for_cache, key_metric_of, with_class_weights
from hcm.training.step import TrainStep, make_train_step

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- loaders


class SkipSampler(Sampler):
    """``sampler``'s indices after the first ``skip`` (the items an interrupted epoch already used)."""

    def __init__(self, sampler: Sampler, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def train_loader(data: CacheDataset, cfg: TrainConfig, d: Dist, epoch: int, done_steps: int = 0) -> DataLoader:
    """Shuffled loader of this rank's share; the order depends only on (seed, epoch).

    ``done_steps`` batches of the epoch are left out (resuming mid-epoch); the rest come in the
    same batches as in an uninterrupted epoch.
    """
    if cfg.batch_size % d.world:
        raise TrainingError(f"batch size {cfg.batch_size} is not divisible by the {d.world} processes; "
                            f"change --batch-size")
    sampler = DistributedSampler(data, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    per_rank = cfg.batch_size // d.world
    return DataLoader(
        data, batch_size=per_rank, sampler=SkipSampler(sampler, done_steps * per_rank), collate_fn=data.collate(),
        num_workers=cfg.num_workers, generator=generator, pin_memory=d.device.type == "cuda",
        worker_init_fn=ignore_stop_signals,
    )


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
class Context:
    """What the steps of one run share: its data, settings, process, files and stop requests."""

    setup: "Setup"
    cfg: TrainConfig
    d: Dist
    paths: RunPaths
    extra: dict[str, Any]  # stored in every checkpoint (the run config)
    stop: StopSignals


def train_one_epoch(loop: Loop, run: Context, on_step: Callable[[float], None], step: TrainStep) -> dict[str, float]:
    """This rank's share of one epoch from ``loop.step`` on; the item-weighted mean of every loss term.
    ``on_step`` gets the running mean of the loss after each step (at the end: ``train_loss`` of this rank).

    After each step the ranks agree on two flags: a non-finite loss/gradient on any rank (the
    batch is skipped or the run stops) and a stop signal on any rank (a checkpoint, then stop).
    """
    loop.model.train()
    for batch in train_loader(run.setup.train_data, run.cfg, run.d, loop.epoch, loop.step):
        before = rng_state()
        out, fault = step.backward(batch)
        bad, signum = max_over_ranks([float(bool(fault)), float(run.stop.signum)], run.d)
        if bad:
            skip_or_stop(loop, run, batch, fault, before)
        else:
            step.update()
            add_loss_terms(loop.partial, out, len(batch["index"]))
        loop.scheduler.step()
        loop.step += 1
        on_step(loop.partial.get("loss", 0.0) / max(1.0, loop.partial.get("items", 0.0)))  # the epoch's mean so far
        if signum:
            save_last(loop, rng_state(), run.d, run.paths, run.extra)
            raise interrupted(int(signum), f"epoch {loop.epoch + 1}, step {loop.step}", run.paths.last,
                              run.paths.root, run.d.world)
    means = _reduce_means(loop.partial, run.d)
    means["train_skipped"] = sum(1 for s in loop.skipped if s["epoch"] == loop.epoch + 1)
    loop.step, loop.partial = 0, {}
    return means


def add_loss_terms(sums: dict[str, float], out: Any, n: int) -> None:
    """Add a batch's loss terms, weighted by its ``n`` items, to the epoch's running sums."""
    terms = {"loss": out.loss, **{f"loss_{k}": v for k, v in (getattr(out, "losses", None) or {}).items()}}
    for name, value in terms.items():
        sums[name] = sums.get(name, 0.0) + float(torch.as_tensor(value).detach()) * n
    sums["items"] = sums.get("items", 0.0) + n


def _reduce_means(sums: dict[str, float], d: Dist) -> dict[str, float]:
    names = sorted(k for k in sums if k != "items")
    values = torch.tensor([sums[k] for k in names] + [float(sums.get("items", 0.0))], dtype=torch.float64)
    if d.world > 1:
        dist.all_reduce(values)
    total = max(1.0, float(values[-1]))
    return {f"train_{k}": float(v) / total for k, v in zip(names, values[:-1].tolist())}


def skip_or_stop(loop: Loop, run: Context, batch: dict[str, torch.Tensor], fault: str,
                 before: dict[str, Any]) -> None:
    """A batch with a non-finite loss or gradient: skip it while ``skip_nonfinite`` allows, else stop."""
    reports = gather(run.d, (fault, [run.setup.train_data.ids[i] for i in batch["index"].tolist()]))
    what = next(f for f, _ in reports if f)
    ids = [item for f, items in reports if f for item in items]
    where = f"epoch {loop.epoch + 1}, step {loop.step + 1}"
    if len(loop.skipped) < run.cfg.skip_nonfinite:
        loop.skipped.append({"epoch": loop.epoch + 1, "step": loop.step + 1, "fault": what, "items": ids})
        log.warning("%s at %s (items %s); batch skipped (%d of %d allowed by skip_nonfinite)", what, where,
                    ", ".join(ids), len(loop.skipped), run.cfg.skip_nonfinite)
        return
    kept = keep_good_state(loop, run, before)
    listed = ", ".join(ids[:16]) + (", ..." if len(ids) > 16 else "")
    skip = f" --skip-nonfinite {len(loop.skipped) + 1}"
    raise NonFiniteLossError(
        f"{what} at {where} (items {listed}); training stopped. {kept} To skip such batches: "
        f"`{resume_command(run.paths.root, skip)}`; or train again with a lower --lr, --set amp=off "
        f"or --set grad_clip=1.0")


def keep_good_state(loop: Loop, run: Context, before: dict[str, Any]) -> str:
    """Save the state before the bad batch while the weights are finite; say where the last good state is."""
    if all(bool(torch.isfinite(p).all()) for p in loop.model.parameters()):
        save_last(loop, before, run.d, run.paths, run.extra)
        return (f"The last good checkpoint is kept: {run.paths.last} now holds the state before this batch, "
                f"so the run can be resumed.")
    if run.paths.last.is_file():
        return f"The last good checkpoint is kept: {run.paths.last} (the weights are no longer finite)."
    return "No checkpoint was written: the weights are no longer finite and no epoch had finished."


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


def prepare(info: CacheInfo, cfg: TrainConfig, model_cfg: ModelConfig | None,
            facts: DatasetFacts | None) -> Setup:
    """Open the train and valid splits, check them against the dataset facts, size the model.

    The manifest is ``info``'s (read once per command); the stream statistics are read through the
    train split's own reader."""
    cache_dir, probe, splits = info.directory, info.meta, info.counts
    facts = facts or facts_for_cache(probe)
    if probe.task != facts.task:
        raise TrainingError(f"cache {cache_dir} is a {probe.task} cache but dataset {facts.name!r} is {facts.task}")
    if facts.task == CLASSIFICATION and list(probe.classes or []) != list(facts.class_names):
        raise TrainingError(f"cache {cache_dir} has classes {probe.classes}, dataset {facts.name!r} expects "
                            f"{list(facts.class_names)}; re-extract the cache or fix "
                            f"configs/datasets/{facts.name}.json")
    for split in ("train", "valid"):
        if not splits.get(split):
            raise TrainingError(f"cache {cache_dir} has no {split!r} items (splits: {splits}); hcm picks the best "
                                f"epoch on the validation split only, so a cache needs train and valid items")
    train_data = CacheDataset(info, "train", data_config(facts, cfg, None), in_memory=cfg.in_memory)
    data_cfg = train_data.cfg = data_config(facts, cfg, train_data.cache)
    valid_data = CacheDataset(info, "valid", data_cfg, in_memory=cfg.in_memory)
    model_cfg = (model_cfg or ModelConfig()).for_dataset(facts, train_data.dims)
    model_cfg = with_class_weights(model_cfg, train_data.labels)
    return Setup(train_data, valid_data, facts, data_cfg, model_cfg, key_metric_of(facts))


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
        "provenance": provenance(str(d.device)),
    }


def new_loop(setup: Setup, cfg: TrainConfig, d: Dist, factory: str | Callable, steps_per_epoch: int) -> Loop:
    seed_everything(cfg.seed)
    model = make_model(setup.model_cfg, factory).to(d.device)
    seed_everything(cfg.seed + 1000 * d.rank)  # dropout differs per rank, init does not
    if d.world > 1:
        ids = [d.device.index] if d.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.adamw_decay(setup.model_cfg))
    amp = amp_dtype(cfg.amp, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=amp == torch.float16)
    return Loop(model, optimizer, make_scheduler(optimizer, cfg, steps_per_epoch), scaler, amp)


def validate(loop: Loop, loader: DataLoader, setup: Setup, d: Dist) -> dict[str, float]:
    """Validation loss and metrics, prefixed ``valid_``."""
    preds = predict(loop.model, loader, d, loop.amp)
    labels = setup.valid_data.labels[preds.index]
    values = M.compute_metrics(setup.facts.task, preds.scores, labels, setup.facts.class_names, setup.facts.metrics)
    return {"valid_loss": preds.loss, **{f"valid_{k}": v for k, v in values.items()}}


def finish_epoch(loop: Loop, row: dict[str, Any], run: Context) -> bool:
    """Record the epoch, update the best, write checkpoints; True when early stopping fires."""
    loop.epoch += 1
    value = row[f"valid_{run.setup.key}"]
    improved = M.is_better(value, loop.best_value, run.setup.facts.higher_is_better)
    if improved:
        loop.best_value, loop.best_epoch, loop.bad_epochs = value, loop.epoch, 0
        loop.best_valid = {k[len("valid_"):]: v for k, v in row.items() if k.startswith("valid_")}
    else:
        loop.bad_epochs += 1
    loop.history.append({"epoch": loop.epoch, **row, "best": improved})
    save_last(loop, rng_state(), run.d, run.paths, run.extra, best=improved)
    return stopped_early(loop, run.cfg)


def stopped_early(loop: Loop, cfg: TrainConfig) -> bool:
    return cfg.patience > 0 and loop.bad_epochs >= cfg.patience


@contextmanager
def cache_guard(loop: Loop, run: Context) -> Iterator[None]:
    """Turn a read failure of a cache that has vanished (deleted, moved, unmounted) into a clear message."""
    cache = run.setup.train_data.cache_dir
    try:
        if not (cache / MANIFEST).is_file():
            raise FileNotFoundError(cache / MANIFEST)
        yield
    except (CacheError, OSError) as error:
        if (cache / MANIFEST).is_file():
            raise
        kept = (f"{run.paths.last} (epoch {loop.epoch}) is kept" if run.paths.last.is_file()
                else "no checkpoint had been written yet")
        raise TrainingError(
            f"the feature cache {cache} was removed or moved during training (epoch {loop.epoch + 1}); {kept}. "
            f"Put the cache back, then continue with `{resume_command(run.paths.root)}`") from error


def run_epochs(loop: Loop, run: Context, callbacks: Sequence[Callable[[int, dict], None]], show: bool) -> bool:
    """Train from where ``loop`` stands to ``cfg.epochs``; True when stopped early."""
    setup, cfg, d = run.setup, run.cfg, run.d
    if stopped_early(loop, cfg):
        return True
    logger = RunLogger(run.paths, d.main, loop.epoch)
    valid = eval_loader(setup.valid_data, cfg, d)
    steps = len(train_loader(setup.train_data, cfg, d, loop.epoch))
    step = make_train_step(loop, cfg.step_graph, cfg.grad_clip, d.device, d.world, cfg.batch_size // d.world)
    try:
        with epoch_progress(show and d.main) as bar:
            while loop.epoch < cfg.epochs:
                task = bar.add_task(f"epoch {loop.epoch + 1}/{cfg.epochs}", total=steps, completed=loop.step,
                                    loss="-", valid="")
                on_step = lambda loss, task=task: bar.update(task, advance=1, loss=f"{loss:.4f}")  # noqa: E731
                with cache_guard(loop, run):
                    row = train_one_epoch(loop, run, on_step, step)
                    row.update(validate(loop, valid, setup, d))
                row["lr"] = float(loop.optimizer.param_groups[0]["lr"])  # a device tensor under step_graph
                if d.main:
                    check_run_folder_kept(run.paths, loop.epoch + 1)
                stop = finish_epoch(loop, row, run)
                bar.update(task, valid=f"valid {setup.key} {row[f'valid_{setup.key}']:.4f}")
                logger.epoch(loop.history)
                for callback in callbacks:
                    callback(loop.epoch, row)
                if stop:
                    log.info("early stopping after epoch %d: no better valid %s for %d epochs",
                             loop.epoch, setup.key, cfg.patience)
                    return True
                _, signum = max_over_ranks([0.0, float(run.stop.signum)], d)
                if signum:
                    raise interrupted(int(signum), f"the end of epoch {loop.epoch}", run.paths.last,
                                      run.paths.root, d.world)
    finally:
        logger.close(loop.history, setup.key)
    return False


def train(cache_dir: str | os.PathLike, run_dir: str | os.PathLike, train_cfg: TrainConfig,
          model_cfg: ModelConfig | None = None, *, facts: DatasetFacts | None = None,
          model_factory: str | Callable[[ModelConfig], nn.Module] | None = None, resume: bool = False,
          callbacks: Sequence[Callable[[int, dict], None]] = (), progress: bool = True,
          cache: CacheInfo | None = None, dist_setup: Dist | None = None) -> RunResult:
    """Train HCMNet (or ``model_factory``'s model) on a cache; write the run into ``run_dir``.

    Args:
        cache_dir: feature cache with train and valid splits.
        run_dir: the run folder (created; with ``resume`` the interrupted run's folder).
        train_cfg / model_cfg: settings; the model's input widths and task come from the cache.
        facts: dataset facts (default: ``configs/datasets/<cache dataset>.json``).
        model_factory: ``"module:Name"`` or a callable taking the ModelConfig (default HCMNet).
        resume: continue from ``checkpoints/last.pt`` of ``run_dir`` (mid-epoch if it stopped there).
        callbacks: called as ``callback(epoch, row)`` after each epoch is saved.
        progress: show the per-epoch progress bars.
        cache / dist_setup: the cache's manifest and the process group when the caller (``hcm train``)
            has them already, so a command reads the one and joins the other once.

    Raises :class:`~hcm.training.faults.TrainingInterrupted` (exit code 130/143) after saving a
    checkpoint when SIGINT/SIGTERM arrives, and ``NonFiniteLossError`` on a non-finite loss or gradient.
    """
    d = dist_setup or setup_distributed(train_cfg.device)
    paths = RunPaths(Path(run_dir))
    check_run_folder(paths, resume)
    with StopSignals() as stop:
        setup = prepare(cache or cache_info(cache_dir), train_cfg, model_cfg, facts)
        factory = model_factory if model_factory is not None else DEFAULT_MODEL
        config = run_config(setup, train_cfg, Path(cache_dir), factory_path(factory), d)
        loop = new_loop(setup, train_cfg, d, factory, len(train_loader(setup.train_data, train_cfg, d, 0)))
        if resume:
            resume_from(loop, paths, config, d)
        elif d.main:
            paths.root.mkdir(parents=True, exist_ok=True)
            write_json(paths.config, config)
        run = Context(setup, train_cfg, d, paths, {"config": config}, stop)
        stopped = run_epochs(loop, run, callbacks, progress)
    return RunResult(paths.root, setup.key, setup.facts.higher_is_better, loop.best_epoch,
                     loop.best_value if loop.best_value is not None else math.nan, loop.best_valid,
                     loop.epoch, stopped, loop.history)
