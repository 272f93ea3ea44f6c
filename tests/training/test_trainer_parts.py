"""training/trainer.py part by part: the loaders, the schedule, the loss sums, a bad batch, the run
config, a new loop, validation, the end of an epoch, early stopping, a vanished cache and the epochs'
callbacks, each on the tiny cache and model (the whole runs: tests/training/test_trainer.py and
tests/training/test_trainer_faults.py)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import re
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rich
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hcm_tiny_cache import build_cache
from hcm_tiny_model import TinyNet, tiny_facts
from torch.utils.data import Dataset, SequentialSampler

from hcm.cache.manifest import MANIFEST
from hcm.cache.schema import CacheError
from hcm.model.config import ModelConfig
from hcm.training import TrainingError
from hcm.training.checkpoints import load_checkpoint, resume_from, rng_state
from hcm.training.data import cache_info
from hcm.training.distributed import Dist
from hcm.training.faults import NonFiniteLossError, TrainingInterrupted
from hcm.training.inference import eval_loader, predict
from hcm.training.metrics import compute_metrics
from hcm.training.runs import RunFolderGoneError, RunPaths
from hcm.training.settings import TrainConfig
from hcm.training.step import make_train_step
from hcm.training.trainer import (
    Context,
    Setup,
    SkipSampler,
    _reduce_means,
    add_loss_terms,
    cache_guard,
    finish_epoch,
    keep_good_state,
    make_scheduler,
    new_loop,
    prepare,
    run_config,
    run_epochs,
    skip_or_stop,
    stopped_early,
    train,
    train_loader,
    train_one_epoch,
    validate,
)

FACTORY = "hcm_tiny_model:TinyNet"
STEPS = 4  # 32 train items, batch 8
CPU = Dist()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cache(tmp_path_factory.mktemp("cache") / "sample" / "tiny")


@pytest.fixture(scope="module")
def setup(cache: Path) -> Setup:
    return prepare(cache_info(cache), _cfg(), ModelConfig(), tiny_facts())


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=8, lr=0.02, patience=0, seed=3, warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def _context(setup: Setup, root: Path, cfg: TrainConfig | None = None, signum: int = 0) -> Context:
    """A run of ``setup`` in ``root`` (its config.json written), with a stop request ``signum``."""
    paths = RunPaths(root)
    root.mkdir(parents=True)
    paths.config.write_text("{}")
    return Context(setup, cfg or _cfg(), CPU, paths, {"config": {"run": root.name}}, SimpleNamespace(signum=signum))


def _loop(setup: Setup, cfg: TrainConfig | None = None, factory=FACTORY):
    return new_loop(setup, cfg or _cfg(), CPU, factory, STEPS)


@pytest.fixture
def terminal() -> io.StringIO:
    """What rich's console shows, as a 160-column terminal would; the console is put back after."""
    console = rich.get_console()
    saved = dict(console.__dict__)
    shown = io.StringIO()
    rich.reconfigure(file=shown, force_terminal=True, width=160, color_system=None)
    yield shown
    console.__dict__.clear()
    console.__dict__.update(saved)


def _plain(frame: str) -> str:
    """A terminal frame without its control sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame)


def _batches(loader) -> list[list[int]]:
    return [batch["index"].tolist() for batch in loader]


# --------------------------------------------------------------------------- loaders


def test_skip_sampler_leaves_out_the_first_items() -> None:
    sampler = SequentialSampler(range(10))
    assert list(SkipSampler(sampler, 3)) == [3, 4, 5, 6, 7, 8, 9] and len(SkipSampler(sampler, 3)) == 7
    assert list(SkipSampler(sampler, 0)) == list(range(10)) and len(SkipSampler(sampler, 0)) == 10
    assert list(SkipSampler(sampler, 12)) == [] and len(SkipSampler(sampler, 12)) == 0
    assert list(SkipSampler(sampler, 10)) == [] and len(SkipSampler(sampler, 10)) == 0


def test_the_shuffling_order_depends_only_on_seed_and_epoch(setup: Setup) -> None:
    data = setup.train_data
    order = _batches(train_loader(data, _cfg(), CPU, 0))
    assert [len(b) for b in order] == [8, 8, 8, 8]
    assert sorted(i for b in order for i in b) == list(range(32))  # every item once
    assert order != [list(range(i, i + 8)) for i in range(0, 32, 8)]  # shuffled
    torch.manual_seed(99)  # the global RNG plays no part
    assert _batches(train_loader(data, _cfg(), CPU, 0)) == order
    assert _batches(train_loader(data, _cfg(), CPU, 1)) != order
    assert _batches(train_loader(data, _cfg(seed=4), CPU, 0)) != order


def test_a_resumed_epoch_skips_the_batches_done_and_keeps_the_rest(setup: Setup) -> None:
    data = setup.train_data
    full = _batches(train_loader(data, _cfg(), CPU, 2))
    resumed = train_loader(data, _cfg(), CPU, 2, done_steps=3)
    assert len(resumed) == 1 and _batches(resumed) == full[3:]
    assert _batches(train_loader(data, _cfg(), CPU, 2, done_steps=1)) == full[1:]
    # two ranks: each takes half of every global batch, and skips its own half of the batches done
    halves = [_batches(train_loader(data, _cfg(), Dist(rank, 2), 2)) for rank in (0, 1)]
    assert [len(b) for b in halves[0]] == [4, 4, 4, 4]
    assert sorted(i for h in halves for b in h for i in b) == list(range(32))
    for rank in (0, 1):
        assert _batches(train_loader(data, _cfg(), Dist(rank, 2), 2, done_steps=2)) == halves[rank][2:]


def test_a_batch_that_the_processes_cannot_share_is_refused(setup: Setup) -> None:
    with pytest.raises(TrainingError, match=r"^batch size 8 is not divisible by the 3 processes; change --batch-size$"):
        train_loader(setup.train_data, _cfg(), Dist(0, 3), 0)
    assert len(train_loader(setup.train_data, _cfg(), Dist(1, 4), 0)) == 4  # 2 items a rank


class _WorkerProbe(Dataset):
    """Eight items; a batch says, from the worker that loaded it, whether SIGINT and SIGTERM are
    ignored there and the worker's torch seed."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self):
        return _probe_batch


def _probe_batch(items: list[int]) -> dict:
    ignored = [signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)]
    return {"index": torch.tensor(items), "ignored": ignored, "seed": torch.initial_seed()}


@pytest.fixture
def stop_handlers():
    """SIGINT and SIGTERM handled in this process (pytest started in the background ignores SIGINT)."""
    handlers = {s: signal.signal(s, lambda signum, frame: None) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def test_loader_workers_leave_stop_signals_to_the_main_process_and_are_seeded_by_seed_and_epoch(
        stop_handlers) -> None:
    def first(cfg: TrainConfig, epoch: int) -> dict:
        loader = train_loader(_WorkerProbe(), cfg, CPU, epoch)
        assert not loader.pin_memory  # no pinned copies on the CPU
        return next(iter(loader))

    batch = first(_cfg(num_workers=1), 0)
    assert batch["ignored"] == [True, True]
    assert signal.SIG_IGN not in map(signal.getsignal, (signal.SIGINT, signal.SIGTERM))  # only in the worker
    torch.manual_seed(7)
    again = first(_cfg(num_workers=1), 0)
    assert again["seed"] == batch["seed"] and again["index"].tolist() == batch["index"].tolist()
    assert first(_cfg(num_workers=1), 1)["seed"] != batch["seed"]
    assert first(_cfg(num_workers=1, seed=4), 0)["seed"] != batch["seed"]


# --------------------------------------------------------------------------- optimisation


def _factors(cfg: TrainConfig, steps_per_epoch: int, steps: int) -> list[float]:
    """The learning rate (base 1) at steps 0 .. steps-1 of the schedule."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_the_schedule_warms_up_linearly_then_decays_by_cosine_to_zero() -> None:
    # 2 epochs of 4 steps, warm-up half an epoch (2 steps); the cosine spans the 6 steps after it
    cosine = [0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(7)]
    assert _factors(_cfg(epochs=2, warmup_epochs=0.5), 4, 11) == pytest.approx(
        [0.5, 1.0, *cosine, 0.0, 0.0], abs=1e-12)
    by_hand = _factors(_cfg(epochs=2, warmup_epochs=0.5), 4, 11)
    assert by_hand[5] == pytest.approx(0.5, abs=1e-12) and by_hand[6] == pytest.approx(0.25, abs=1e-12)


def test_a_constant_schedule_stays_at_the_rate_after_the_warm_up() -> None:
    assert _factors(_cfg(epochs=2, warmup_epochs=0.5, scheduler="constant"), 4, 10) == pytest.approx(
        [0.5, 1.0] + [1.0] * 8, abs=1e-12)
    assert _factors(_cfg(epochs=1, warmup_epochs=0.0, scheduler="constant"), 4, 3) == [1.0, 1.0, 1.0]


def test_the_warm_up_length_is_rounded_to_whole_steps() -> None:
    # 0.5 epoch of 3 steps = 1.5 steps: 2 steps of warm-up; then the cosine over 1 step
    assert _factors(_cfg(epochs=1, warmup_epochs=0.5), 3, 4) == pytest.approx([0.5, 1.0, 1.0, 0.0], abs=1e-12)
    # no warm-up: the cosine starts at the first step
    assert _factors(_cfg(epochs=1, warmup_epochs=0.0), 2, 3) == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    # an epoch of no steps still makes a schedule: it is over after the first step
    assert _factors(_cfg(epochs=1, warmup_epochs=0.0), 0, 2) == pytest.approx([1.0, 0.0], abs=1e-12)


def test_loss_terms_are_summed_weighted_by_items_and_averaged() -> None:
    def out(loss: float, **terms: float) -> SimpleNamespace:
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return SimpleNamespace(loss=f64(loss), losses={k: f64(v) for k, v in terms.items()})

    sums: dict[str, float] = {}
    add_loss_terms(sums, out(0.3, task=0.25, reg=0.05), 4)
    add_loss_terms(sums, out(0.7, task=0.5, reg=0.2), 2)
    assert sums == pytest.approx({"loss": 0.3 * 4 + 0.7 * 2, "loss_task": 0.25 * 4 + 0.5 * 2,
                                  "loss_reg": 0.05 * 4 + 0.2 * 2, "items": 6.0}, abs=1e-15)
    assert _reduce_means(sums, CPU) == {"train_loss": sums["loss"] / 6, "train_loss_reg": sums["loss_reg"] / 6,
                                        "train_loss_task": sums["loss_task"] / 6}
    plain: dict[str, float] = {}
    add_loss_terms(plain, SimpleNamespace(loss=torch.tensor(2.0)), 3)  # a model without loss terms
    add_loss_terms(plain, SimpleNamespace(loss=torch.tensor(1.0), losses=None), 1)
    assert plain == {"loss": 7.0, "items": 4.0}
    assert _reduce_means({"loss": 3.0, "items": 1.0}, CPU) == {"train_loss": 3.0}  # one item
    assert _reduce_means({"loss": 0.1, "items": 1.0}, CPU) == {"train_loss": 0.1}  # kept in float64
    assert _reduce_means({}, CPU) == {}  # an epoch whose batches were all skipped


# --------------------------------------------------------------------------- a bad batch


def test_non_finite_batches_are_skipped_within_the_budget_then_stop_the_run(
        setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = _context(setup, tmp_path / "run", _cfg(skip_nonfinite=2))
    loop = _loop(setup)
    loop.epoch, loop.step = 1, 2
    ids = setup.train_data.ids
    batch = {"index": torch.tensor([0, 2])}
    with caplog.at_level(logging.WARNING, "hcm.training.trainer"):
        skip_or_stop(loop, run, batch, "loss became nan", rng_state())
        loop.step = 3
        skip_or_stop(loop, run, batch, "loss became inf", rng_state())
    assert loop.skipped == [
        {"epoch": 2, "step": 3, "fault": "loss became nan", "items": [ids[0], ids[2]]},
        {"epoch": 2, "step": 4, "fault": "loss became inf", "items": [ids[0], ids[2]]}]
    assert [r.getMessage() for r in caplog.records] == [
        f"loss became nan at epoch 2, step 3 (items {ids[0]}, {ids[2]}); batch skipped (1 of 2 allowed by "
        f"skip_nonfinite)",
        f"loss became inf at epoch 2, step 4 (items {ids[0]}, {ids[2]}); batch skipped (2 of 2 allowed by "
        f"skip_nonfinite)"]
    assert not run.paths.last.exists()
    torch.manual_seed(5)
    before = rng_state()
    torch.rand(3)  # the state moves on after "before"
    loop.step = 7
    with pytest.raises(NonFiniteLossError) as caught:
        skip_or_stop(loop, run, {"index": torch.tensor([5])}, "gradient norm became nan", before)
    assert str(caught.value) == (
        f"gradient norm became nan at epoch 2, step 8 (items {ids[5]}); training stopped. The last good checkpoint "
        f"is kept: {run.paths.last} now holds the state before this batch, so the run can be resumed. To skip "
        f"such batches: `hcm train --resume --run {run.paths.root.resolve()} --skip-nonfinite 3`; or train again "
        f"with a lower --lr, --set amp=off or --set grad_clip=1.0")
    assert len(loop.skipped) == 2
    state = load_checkpoint(run.paths.last)
    assert torch.equal(state["rng"][0]["torch"], before["torch"]) and (state["epoch"], state["step"]) == (1, 7)


def test_a_stop_on_the_first_bad_batch_lists_at_most_16_items(setup: Setup, tmp_path: Path) -> None:
    run = _context(setup, tmp_path / "run")
    ids = setup.train_data.ids
    with pytest.raises(NonFiniteLossError, match=r"^loss became nan at epoch 1, step 1 \(items ") as caught:
        skip_or_stop(_loop(setup), run, {"index": torch.arange(17)}, "loss became nan", rng_state())
    listed = str(caught.value).split("(items ")[1].split(")")[0]
    assert listed == ", ".join(ids[:16]) + ", ..." and ids[16] not in str(caught.value)
    assert "--skip-nonfinite 1`" in str(caught.value)
    with pytest.raises(NonFiniteLossError) as caught:
        skip_or_stop(_loop(setup), run, {"index": torch.arange(16)}, "loss became nan", rng_state())
    assert str(caught.value).split("(items ")[1].split(")")[0] == ", ".join(ids[:16])


def test_the_last_good_state_is_kept_or_named(setup: Setup, tmp_path: Path) -> None:
    run = _context(setup, tmp_path / "run")
    loop = _loop(setup)
    assert keep_good_state(loop, run, rng_state()) == (
        f"The last good checkpoint is kept: {run.paths.last} now holds the state before this batch, so the run "
        f"can be resumed.")
    assert run.paths.last.is_file()
    written = run.paths.last.read_bytes()
    with torch.no_grad():
        loop.model.head.weight[0, 0] = math.nan  # one weight no longer finite
    assert keep_good_state(loop, run, rng_state()) == (
        f"The last good checkpoint is kept: {run.paths.last} (the weights are no longer finite).")
    assert run.paths.last.read_bytes() == written
    fresh = _context(setup, tmp_path / "fresh")
    assert keep_good_state(loop, fresh, rng_state()) == (
        "No checkpoint was written: the weights are no longer finite and no epoch had finished.")
    assert not fresh.paths.checkpoints.exists()


# --------------------------------------------------------------------------- one epoch


def test_an_epoch_reports_the_item_weighted_mean_of_its_loss_terms(setup: Setup, tmp_path: Path) -> None:
    run, loop = _context(setup, tmp_path / "run"), _loop(setup)
    means_seen: list[float] = []
    before = {k: v.clone() for k, v in loop.model.state_dict().items()}
    means = train_one_epoch(loop, run, means_seen.append, make_train_step(loop, "off", 1.0, CPU.device, 1, 8))
    assert set(means) == {"train_loss", "train_loss_task", "train_loss_reg", "train_skipped"}
    assert means["train_skipped"] == 0 and len(means_seen) == STEPS
    assert means_seen[-1] == pytest.approx(means["train_loss"], rel=1e-12)
    assert means["train_loss"] == pytest.approx(means["train_loss_task"] + means["train_loss_reg"], rel=1e-6)
    assert (loop.step, loop.partial, loop.scheduler.last_epoch) == (0, {}, STEPS)
    assert any(not torch.equal(before[k], v) for k, v in loop.model.state_dict().items())  # it trained


class _FaultAt:
    """The run's step, with the batches of the steps ``bad`` (counted from 1) reported non-finite."""

    def __init__(self, step, bad: set[int]) -> None:
        self.step, self.bad, self.n = step, bad, 0

    def backward(self, batch):
        self.n += 1
        out, fault = self.step.backward(batch)
        return out, "loss became nan" if self.n in self.bad else fault

    def update(self) -> None:
        self.step.update()


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the first batch skipped
def test_a_skipped_batch_adds_nothing_and_counts_in_its_epoch_only(setup: Setup, tmp_path: Path) -> None:
    run, loop = _context(setup, tmp_path / "run", _cfg(skip_nonfinite=2)), _loop(setup)
    loop.epoch = 1
    loop.skipped = [{"epoch": 1, "step": 1, "fault": "loss became nan", "items": ["x"]}]  # skipped in epoch 1
    seen: list[float] = []
    step = _FaultAt(make_train_step(loop, "off", 1.0, CPU.device, 1, 8), {1})
    means = train_one_epoch(loop, run, seen.append, step)
    assert means["train_skipped"] == 1 and loop.skipped[-1]["epoch"] == 2
    assert seen[0] == 0.0 and seen[1] > 0  # the mean so far is of the batches kept
    assert loop.scheduler.last_epoch == STEPS  # the schedule moves on over a skipped batch


class _DropoutNet(TinyNet):
    """TinyNet with dropout on its text input: each training step draws from torch's RNG."""

    def forward(self, batch):
        return super().forward({**batch, "text": F.dropout(batch["text"], 0.5, self.training)})


def test_an_epoch_stopped_mid_way_and_resumed_ends_as_an_uninterrupted_one(setup: Setup, tmp_path: Path) -> None:
    def epoch(loop, run, on_step=lambda loss: None):
        return train_one_epoch(loop, run, on_step, make_train_step(loop, "off", 1.0, CPU.device, 1, 8))

    full = _loop(setup, factory=_DropoutNet)
    expected = epoch(full, _context(setup, tmp_path / "full"))
    run = _context(setup, tmp_path / "cut")
    cut, steps = _loop(setup, factory=_DropoutNet), []

    def stop_after_two(loss: float) -> None:  # the stop request arrives during step 2
        steps.append(loss)
        run.stop.signum = signal.SIGTERM if len(steps) == 1 else run.stop.signum

    with pytest.raises(TrainingInterrupted, match=r"^training stopped by SIGTERM at epoch 1, step 2; ") as caught:
        epoch(cut, run, stop_after_two)
    assert caught.value.exit_code == 143 and len(steps) == 2
    assert str(caught.value) == (
        f"training stopped by SIGTERM at epoch 1, step 2; {run.paths.last} holds everything needed to continue. "
        f"Continue with:\n  hcm train --resume --run {run.paths.root.resolve()}")
    state = load_checkpoint(run.paths.last)
    assert (state["epoch"], state["step"], state["partial"][0]["items"]) == (0, 2, 16.0)
    torch.manual_seed(12345)  # the resumed epoch must not depend on the RNG state it starts in
    resumed = _loop(setup, factory=_DropoutNet)
    resume_from(resumed, run.paths, run.extra["config"], CPU)
    run.stop.signum = 0
    assert epoch(resumed, run) == expected
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the run


def test_the_run_config_holds_what_repeats_or_evaluates_the_run(setup: Setup, cache: Path, tmp_path: Path) -> None:
    cfg = _cfg()
    indirect = cache / ".." / ".." / "sample" / cache.name
    config = run_config(setup, cfg, indirect, FACTORY, CPU)
    assert set(config) == {"dataset", "profile", "task", "classes", "recipe_hash", "cache", "key_metric",
                           "higher_is_better", "train", "model", "reading_departures", "data", "facts",
                           "model_factory", "world_size", "torch", "created", "provenance"}
    assert (config["dataset"], config["profile"], config["task"]) == ("sample", "tiny", "regression")
    assert config["recipe_hash"] == setup.train_data.meta.recipe_hash and config["recipe_hash"]
    assert config["cache"] == str(cache.resolve()) and config["key_metric"] == "mae"
    assert config["higher_is_better"] is False and config["train"] == cfg.to_dict()
    assert config["model"] == setup.model_cfg.to_dict() and config["model_factory"] == FACTORY
    assert config["reading_departures"] == setup.model_cfg.departures()
    assert config["data"] == dataclasses.asdict(setup.data_cfg) and config["facts"]["name"] == "sample"
    assert config["world_size"] == 1 and config["torch"] == torch.__version__
    assert abs(time.mktime(time.strptime(config["created"], "%Y-%m-%dT%H:%M:%S")) - time.time()) < 60
    assert config["provenance"]["device"] == "cpu" and json.loads(json.dumps(config)) == config  # plain JSON


def test_a_new_loop_is_seeded_by_the_seed_and_set_up_for_the_run(setup: Setup) -> None:
    cfg = _cfg(seed=11, lr=0.03)
    loop = new_loop(setup, cfg, CPU, FACTORY, STEPS)
    after = torch.rand(4)
    torch.manual_seed(11)
    assert torch.equal(after, torch.rand(4))  # dropout of a one-process run draws from the seed itself
    again = new_loop(setup, cfg, CPU, FACTORY, STEPS)
    other = new_loop(setup, _cfg(seed=12), CPU, FACTORY, STEPS)
    weights = loop.model.state_dict()
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in weights.items())
    assert any(not torch.equal(v, other.model.state_dict()[k]) for k, v in weights.items())
    rank1 = new_loop(setup, cfg, Dist(1, 1), FACTORY, STEPS)  # another rank: the same weights, other dropout
    assert all(torch.equal(v, rank1.model.state_dict()[k]) for k, v in weights.items())
    assert not torch.equal(torch.rand(4), after)
    group = loop.optimizer.param_groups[0]
    assert isinstance(loop.optimizer, torch.optim.AdamW) and group["initial_lr"] == 0.03
    assert group["weight_decay"] == cfg.adamw_decay(setup.model_cfg)
    assert group["lr"] == pytest.approx(0.03 / 2)  # step 1 of a 2-step warm-up
    assert loop.amp is None and not loop.scaler.is_enabled()  # no mixed precision on the CPU
    assert (loop.epoch, loop.step, loop.best_value, loop.history) == (0, 0, None, [])


def test_validation_reports_the_loss_and_metrics_of_the_valid_split(setup: Setup) -> None:
    loop = _loop(setup)
    loader = eval_loader(setup.valid_data, _cfg(), CPU)
    row = validate(loop, loader, setup, CPU)
    assert {"valid_loss", "valid_mae", "valid_corr"} <= set(row) and all(k.startswith("valid_") for k in row)
    preds = predict(loop.model, loader, CPU)
    truth = np.asarray(setup.valid_data.labels, dtype=np.float64)[preds.index]
    assert row["valid_mae"] == pytest.approx(float(np.mean(np.abs(preds.scores - truth))), rel=1e-6)
    assert row["valid_loss"] == pytest.approx(preds.loss, rel=1e-9)


def _row(value: float, key: str = "mae") -> dict:
    return {"train_loss": 1.0, f"valid_{key}": value, "valid_loss": value + 1, "lr": 0.01}


def test_the_best_epoch_is_the_best_valid_value_and_best_pt_holds_it(setup: Setup, tmp_path: Path) -> None:
    run, loop = _context(setup, tmp_path / "run"), _loop(setup)
    stops = [finish_epoch(loop, _row(v), run) for v in (0.9, 0.5, 0.7)]
    assert stops == [False, False, False]  # patience 0: no early stopping
    assert (loop.epoch, loop.best_epoch, loop.best_value, loop.bad_epochs) == (3, 2, 0.5, 1)
    assert loop.best_valid == {"mae": 0.5, "loss": 1.5}
    assert loop.history == [{"epoch": 1, **_row(0.9), "best": True}, {"epoch": 2, **_row(0.5), "best": True},
                            {"epoch": 3, **_row(0.7), "best": False}]
    assert load_checkpoint(run.paths.best)["epoch"] == 2
    last = load_checkpoint(run.paths.last)
    assert (last["epoch"], last["best_epoch"], last["history"]) == (3, 2, loop.history)
    assert last["config"] == run.extra["config"]
    finish_epoch(loop, _row(0.6), run)  # no better than 0.5: a second bad epoch
    assert loop.bad_epochs == 2
    finish_epoch(loop, _row(0.4), run)  # better: the count starts over
    assert (loop.bad_epochs, loop.best_epoch, load_checkpoint(run.paths.best)["epoch"]) == (0, 5, 5)


def test_a_key_metric_where_higher_is_better(setup: Setup, tmp_path: Path) -> None:
    higher = dataclasses.replace(setup, key="weighted_f1", facts=dataclasses.replace(setup.facts,
                                                                                       higher_is_better=True))
    run, loop = _context(higher, tmp_path / "run"), _loop(setup)
    for value in (0.5, 0.7, 0.6, 0.7):
        finish_epoch(loop, _row(value, "weighted_f1"), run)
    assert (loop.best_epoch, loop.best_value, loop.bad_epochs) == (2, 0.7, 2)  # a tie is no improvement
    assert loop.best_valid == {"weighted_f1": 0.7, "loss": 1.7}


def test_early_stopping_fires_after_patience_epochs_without_improvement(setup: Setup, tmp_path: Path) -> None:
    run, loop = _context(setup, tmp_path / "run", _cfg(patience=2)), _loop(setup)
    assert [finish_epoch(loop, _row(v), run) for v in (0.5, 0.6, 0.7)] == [False, False, True]
    for patience, bad, stops in [(0, 0, False), (0, 5, False), (2, 1, False), (2, 2, True), (2, 3, True),
                                 (1, 0, False), (1, 1, True)]:
        loop.bad_epochs = bad
        assert stopped_early(loop, _cfg(patience=patience)) is stops, (patience, bad)


# --------------------------------------------------------------------------- a vanished cache


def _guarded(tmp_path: Path, last: bool = False):
    """A loop at epoch 2 and a run whose cache is a folder with only a manifest."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / MANIFEST).write_text("{}")
    paths = RunPaths(tmp_path / "run")
    if last:
        paths.checkpoints.mkdir(parents=True)
        paths.last.write_bytes(b"state")
    setup = SimpleNamespace(train_data=SimpleNamespace(cache_dir=cache))
    return SimpleNamespace(epoch=2), Context(setup, _cfg(), CPU, paths, {}, SimpleNamespace(signum=0)), cache


def test_a_read_error_of_a_cache_that_vanished_is_named(tmp_path: Path) -> None:
    loop, run, cache = _guarded(tmp_path, last=True)
    error = OSError("gone")
    with pytest.raises(TrainingError) as caught:
        with cache_guard(loop, run):
            (cache / MANIFEST).unlink()
            raise error
    assert str(caught.value) == (
        f"the feature cache {cache} was removed or moved during training (epoch 3); {run.paths.last} (epoch 2) is "
        f"kept. Put the cache back, then continue with `hcm train --resume --run {run.paths.root.resolve()}`")
    assert caught.value.__cause__ is error


def test_a_cache_gone_before_the_epoch_is_named_without_a_checkpoint(tmp_path: Path) -> None:
    loop, run, cache = _guarded(tmp_path)
    (cache / MANIFEST).unlink()
    with pytest.raises(TrainingError, match=r"\(epoch 3\); no checkpoint had been written yet\. Put the cache back"):
        with cache_guard(loop, run):
            raise AssertionError("the epoch ran without its cache")


def test_other_errors_pass_the_cache_guard_unchanged(tmp_path: Path) -> None:
    loop, run, cache = _guarded(tmp_path)
    with pytest.raises(CacheError, match="^a damaged shard$"):  # the cache is there: its own error
        with cache_guard(loop, run):
            raise CacheError("a damaged shard")
    with pytest.raises(OSError, match="^disk$"):
        with cache_guard(loop, run):
            raise OSError("disk")
    with cache_guard(loop, run):
        pass
    with pytest.raises(ValueError, match="^a bug$"):  # not a read failure
        with cache_guard(loop, run):
            (cache / MANIFEST).unlink()
            raise ValueError("a bug")


def test_a_cache_error_of_a_vanished_cache_is_named(tmp_path: Path) -> None:
    loop, run, cache = _guarded(tmp_path)
    with pytest.raises(TrainingError, match="was removed or moved during training"):
        with cache_guard(loop, run):
            (cache / MANIFEST).unlink()
            raise CacheError("shard missing")


# --------------------------------------------------------------------------- the epochs


def test_the_epochs_call_back_after_each_saved_epoch(setup: Setup, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import hcm.training.runs as runs

    plotted = []
    monkeypatch.setattr(runs, "plot_curves", lambda *args: plotted.append(args))
    run, loop = _context(setup, tmp_path / "run", _cfg(epochs=2)), _loop(setup, _cfg(epochs=2))
    seen = []

    def callback(epoch: int, row: dict) -> None:
        seen.append((epoch, dict(row), load_checkpoint(run.paths.last)["epoch"]))

    assert run_epochs(loop, run, [callback, lambda epoch, row: seen.append(epoch)], False) is False
    assert [(epoch, saved) for epoch, _, saved in seen[::2]] == [(1, 1), (2, 2)] and seen[1::2] == [1, 2]
    row = seen[0][1]
    assert {"train_loss", "train_skipped", "valid_loss", "valid_mae", "lr"} <= set(row)
    assert row["lr"] == loop.history[0]["lr"] and isinstance(row["lr"], float)
    assert row["lr"] == pytest.approx(0.02 * 0.5 * (1 + math.cos(math.pi * 2 / 6)))  # after 4 of 8 steps
    assert [int(r["epoch"]) for r in csv.DictReader(open(run.paths.metrics_csv))] == [1, 2]
    assert (loop.epoch, len(loop.history)) == (2, 2)
    assert plotted == [({"run": loop.history}, "mae", run.paths.curves)]  # the curves of the key metric


def test_the_epochs_stop_early_and_say_so(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    import hcm.training.trainer as trainer

    values = iter([0.5, 0.6, 0.7])
    monkeypatch.setattr(trainer, "validate", lambda *a: {"valid_mae": next(values), "valid_loss": 1.0})
    run, loop = _context(setup, tmp_path / "run", _cfg(epochs=3, patience=1)), _loop(setup)
    seen = []
    with caplog.at_level(logging.INFO, "hcm.training.trainer"):
        assert run_epochs(loop, run, [lambda epoch, row: seen.append(epoch)], False) is True
    assert seen == [1, 2] and loop.epoch == 2
    assert "early stopping after epoch 2: no better valid mae for 1 epochs" in [r.getMessage() for r in caplog.records]
    assert run_epochs(loop, run, [lambda epoch, row: seen.append(epoch)], False) is True  # stopped already
    assert seen == [1, 2] and loop.epoch == 2


def test_a_stop_request_at_the_end_of_an_epoch_stops_there(setup: Setup, tmp_path: Path) -> None:
    run, loop = _context(setup, tmp_path / "run"), _loop(setup)

    def request(epoch: int, row: dict) -> None:
        run.stop.signum = signal.SIGINT

    with pytest.raises(TrainingInterrupted, match=r"^training stopped by SIGINT at the end of epoch 1; ") as caught:
        run_epochs(loop, run, [request], False)
    assert caught.value.exit_code == 130 and load_checkpoint(run.paths.last)["epoch"] == 1
    assert str(caught.value) == (
        f"training stopped by SIGINT at the end of epoch 1; {run.paths.last} holds everything needed to continue. "
        f"Continue with:\n  hcm train --resume --run {run.paths.root.resolve()}")


def test_the_progress_display_shows_each_epoch_its_steps_loss_and_valid_value(
        setup: Setup, tmp_path: Path, terminal: io.StringIO) -> None:
    run, loop = _context(setup, tmp_path / "run", _cfg(epochs=2)), _loop(setup, _cfg(epochs=2))
    loop.step = 2  # resumed half-way through epoch 1
    run_epochs(loop, run, [], True)
    frames = [_plain(frame) for frame in terminal.getvalue().split("\r") if _plain(frame).strip()]
    assert re.search(r"^epoch 1/2 .* 2/4 train_loss - +\d:\d\d:\d\d$", frames[0])  # before its first step
    last = frames[-1].strip().splitlines()
    assert len(last) == 2
    for line, row in zip(last, loop.history):
        assert re.search(rf"^epoch {row['epoch']}/2 ━+ 4/4 train_loss {row['train_loss']:.4f} "
                         rf"valid mae {row['valid_mae']:.4f} \d:\d\d:\d\d$", line), line


def test_no_progress_display_without_show(setup: Setup, tmp_path: Path, terminal: io.StringIO) -> None:
    run, loop = _context(setup, tmp_path / "run", _cfg(epochs=1)), _loop(setup, _cfg(epochs=1))
    run_epochs(loop, run, [], False)
    assert terminal.getvalue() == "" and loop.epoch == 1


def test_the_gradient_clip_reaches_the_step(setup: Setup, tmp_path: Path) -> None:
    """Clipped to 1e-12 the gradients fall below AdamW's eps: the weights barely move; unclipped they do."""
    moved = {}
    for clip in (1e-12, 0.0):
        cfg = _cfg(epochs=1, grad_clip=clip, warmup_epochs=0.0)
        loop = _loop(setup, cfg)
        start = [p.detach().clone() for p in loop.model.parameters()]
        run_epochs(loop, _context(setup, tmp_path / str(clip), cfg), [], False)
        moved[clip] = max(float((p.detach() - s).abs().max()) for p, s in zip(loop.model.parameters(), start))
    assert moved[1e-12] < 1e-4 < 1e-3 < moved[0.0]


def test_the_mean_after_the_first_step_is_that_batch_s_loss(setup: Setup, tmp_path: Path) -> None:
    cfg = _cfg(batch_size=1)
    run, loop = _context(setup, tmp_path / "run", cfg), new_loop(setup, cfg, CPU, FACTORY, 32)
    first = next(iter(train_loader(setup.train_data, cfg, CPU, 0)))
    loop.model.train()
    with torch.no_grad():
        expected = float(loop.model(first).loss)
    seen: list[float] = []
    train_one_epoch(loop, run, seen.append, make_train_step(loop, "off", 1.0, CPU.device, 1, 1))
    assert len(seen) == 32 and seen[0] == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- preparing a run


def test_a_run_is_prepared_from_the_cache_the_facts_and_the_model_settings(cache: Path) -> None:
    facts = dataclasses.replace(tiny_facts(), key_metric="Corr")
    prepared = prepare(cache_info(cache), _cfg(), ModelConfig(dropout=0.3), facts)
    assert prepared.facts is facts and prepared.key == "corr"
    assert (len(prepared.train_data), len(prepared.valid_data)) == (32, 8)
    assert prepared.valid_data.ids[0] == "clip032" and prepared.train_data.ids[0] == "clip000"
    assert prepared.model_cfg.dropout == 0.3 and prepared.model_cfg.task == "regression"
    assert (prepared.model_cfg.d_text, prepared.model_cfg.d_video, prepared.model_cfg.d_audio) == (10, 8, 6)
    assert prepared.model_cfg.class_weights is None
    stats = prepared.data_cfg.stream_stats  # standardised by the train split's statistics, for both splits
    assert set(stats) == {"roberta", "clip_text", "efficientnet", "clip_image", "esresnext", "mel"}
    assert prepared.train_data.cfg is prepared.data_cfg is prepared.valid_data.cfg
    default = prepare(cache_info(cache), _cfg(standardise_streams=False), None, None)
    assert default.facts.name == "sample" and default.model_cfg.dropout == ModelConfig().for_dataset(
        default.facts, default.train_data.dims).dropout
    assert default.data_cfg.stream_stats is None


def test_a_cache_that_does_not_fit_the_dataset_is_refused(cache: Path, tmp_path_factory) -> None:
    info = cache_info(cache)
    with pytest.raises(TrainingError, match=rf"^cache {re.escape(str(cache))} is a regression cache but dataset "
                                            rf"'sample' is classification$"):
        prepare(info, _cfg(), None, tiny_facts("classification"))
    classes = build_cache(tmp_path_factory.mktemp("classes") / "sample" / "tiny", task="classification")
    reordered = dataclasses.replace(tiny_facts("classification"), class_names=("neutral", "negative", "positive"))
    with pytest.raises(TrainingError) as caught:
        prepare(cache_info(classes), _cfg(), None, reordered)
    assert str(caught.value) == (
        f"cache {classes} has classes ['negative', 'neutral', 'positive'], dataset 'sample' expects "
        f"['neutral', 'negative', 'positive']; re-extract the cache or fix configs/datasets/sample.json")
    named = dataclasses.replace(tiny_facts(), class_names=("low", "high"))  # class names mean nothing to a regression
    assert prepare(info, _cfg(), None, named).facts is named
    for split in ("train", "valid"):
        counts = {**info.counts, split: 0}
        short = dataclasses.replace(info, manifest={**info.manifest, "counts": counts})
        with pytest.raises(TrainingError) as caught:
            prepare(short, _cfg(), None, tiny_facts())
        assert str(caught.value) == (
            f"cache {cache} has no {split!r} items (splits: {counts}); hcm picks the best epoch on the validation "
            f"split only, so a cache needs train and valid items")


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A run on a classification cache, with inverse-frequency class weights."""
    folder = build_cache(tmp_path_factory.mktemp("classes") / "sample" / "tiny", task="classification")
    return prepare(cache_info(folder), _cfg(), ModelConfig(class_weights="inverse_frequency"),
                   tiny_facts("classification"))


def test_class_weights_come_from_the_train_split(classes: Setup) -> None:
    counts = np.bincount(np.asarray(classes.train_data.labels, dtype=np.int64), minlength=3)
    assert counts.sum() == 32 and (counts > 0).all()
    assert classes.model_cfg.class_weights == pytest.approx(tuple(32 / (3 * c) for c in counts))
    assert classes.key == "weighted_f1" and classes.facts.higher_is_better


def test_validation_of_a_classification_names_each_class(classes: Setup) -> None:
    row = validate(_loop(classes), eval_loader(classes.valid_data, _cfg(), CPU), classes, CPU)
    for name in ("negative", "neutral", "positive"):
        assert any(name in key for key in row), (name, sorted(row))
    assert {"valid_accuracy", "valid_weighted_f1"} <= set(row)


def test_validation_uses_the_dataset_s_metric_set(setup: Setup) -> None:
    sims = dataclasses.replace(setup, facts=dataclasses.replace(setup.facts, metrics="sims"))
    loop = _loop(setup)
    loader = eval_loader(setup.valid_data, _cfg(), CPU)
    row, default = validate(loop, loader, sims, CPU), validate(loop, loader, setup, CPU)
    preds = predict(loop.model, loader, CPU)
    expected = compute_metrics("regression", preds.scores, setup.valid_data.labels[preds.index], (), "sims")
    assert row == {"valid_loss": pytest.approx(preds.loss), **{f"valid_{k}": pytest.approx(v, nan_ok=True)
                                                               for k, v in expected.items()}}
    assert set(row) != set(default)


@pytest.fixture
def one_process_group(tmp_path: Path):
    """A gloo process group of this process alone (DDP needs one), removed after the test."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_loop_of_several_processes_wraps_the_model_for_ddp(setup: Setup, one_process_group) -> None:
    loop = new_loop(setup, _cfg(), Dist(0, 2), FACTORY, STEPS)
    assert isinstance(loop.model, torch.nn.parallel.DistributedDataParallel)
    assert loop.model.device_ids is None and loop.model.find_unused_parameters  # CPU; heads a variant may skip
    single = _loop(setup)
    assert all(torch.equal(v, loop.model.module.state_dict()[k]) for k, v in single.model.state_dict().items())
    sums = {"loss": 6.0, "loss_task": 3.0, "items": 4.0}
    assert _reduce_means(dict(sums), Dist(0, 2)) == _reduce_means(dict(sums), CPU)  # summed over the one process


def test_a_run_records_its_settings_and_reports_its_best_epoch(cache: Path, tmp_path: Path,
                                                               terminal: io.StringIO) -> None:
    facts = dataclasses.replace(tiny_facts(), key_metric="corr", higher_is_better=True)
    run_dir = tmp_path / "runs" / "one"
    result = train(cache, run_dir, _cfg(epochs=1), ModelConfig(dropout=0.3), facts=facts, model_factory=FACTORY,
                   progress=True, cache=cache_info(cache), dist_setup=CPU)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["dropout"] == 0.3 and config["model_factory"] == FACTORY
    assert (config["key_metric"], config["higher_is_better"], config["train"]["epochs"]) == ("corr", True, 1)
    assert "epoch 1/1" in _plain(terminal.getvalue())
    row = result.history[0]
    assert (result.run_dir, result.key_metric, result.higher_is_better) == (run_dir, "corr", True)
    assert (result.best_epoch, result.best_value, result.epochs_run, result.stopped_early) == (
        1, row["valid_corr"], 1, False)
    assert result.best_valid == {k[len("valid_"):]: v for k, v in row.items() if k.startswith("valid_")}
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"] == config


def test_a_run_without_a_valid_value_reports_nan(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 terminal: io.StringIO) -> None:
    import hcm.training.trainer as trainer

    monkeypatch.setattr(trainer, "validate", lambda *a: {"valid_mae": math.nan, "valid_loss": math.nan})
    (tmp_path / "run").mkdir()  # an empty folder is taken as it is
    result = train(cache, tmp_path / "run", _cfg(epochs=1), ModelConfig(), facts=tiny_facts(), model_factory=FACTORY)
    assert math.isnan(result.best_value) and result.best_epoch == 0 and result.best_valid == {}
    assert "valid mae nan" in _plain(terminal.getvalue())  # progress is shown unless turned off


def test_in_memory_opens_both_splits_in_memory(cache: Path) -> None:
    for in_memory in (True, False):
        prepared = prepare(cache_info(cache), _cfg(in_memory=in_memory), None, tiny_facts())
        assert prepared.train_data.cache.in_memory is prepared.valid_data.cache.in_memory is in_memory


def test_pinned_batches_on_a_gpu_only(setup: Setup) -> None:
    gpu = Dist(0, 1, torch.device("cuda", 0))  # not used to run anything: the loader only records it
    assert train_loader(setup.train_data, _cfg(), gpu, 0).pin_memory is True
    assert train_loader(setup.train_data, _cfg(), CPU, 0).pin_memory is False


def test_mixed_precision_settings_of_a_new_loop(setup: Setup) -> None:
    half = new_loop(setup, _cfg(amp="fp16"), CPU, FACTORY, STEPS)
    assert half.amp == torch.float16 and half.scaler.is_enabled()  # fp16 needs the grad scaler
    brain = new_loop(setup, _cfg(amp="bf16"), CPU, FACTORY, STEPS)
    assert brain.amp == torch.bfloat16 and not brain.scaler.is_enabled()


def test_a_run_folder_deleted_during_training_stops_it(setup: Setup, tmp_path: Path) -> None:
    run, loop = _context(setup, tmp_path / "run"), _loop(setup)

    def delete(epoch: int, row: dict) -> None:
        run.paths.config.unlink()

    with pytest.raises(RunFolderGoneError, match=r"its config\.json was gone after epoch 2\)"):
        run_epochs(loop, run, [delete], False)
    assert loop.epoch == 1  # epoch 2 was trained, and not recorded


def test_a_graphed_step_asked_for_on_the_cpu_runs_eagerly_and_says_why(setup: Setup, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(epochs=1, step_graph="on")
    run, loop = _context(setup, tmp_path / "run", cfg), _loop(setup, cfg)
    with caplog.at_level(logging.INFO):
        run_epochs(loop, run, [], False)
    assert ("step_graph on: the training step runs eagerly: the device is cpu; CUDA graphs need a CUDA GPU "
            "(--device cuda)") in [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert loop.epoch == 1


def test_validation_runs_under_the_loop_s_autocast(setup: Setup) -> None:
    loop = new_loop(setup, _cfg(amp="bf16"), CPU, FACTORY, STEPS)
    loader = eval_loader(setup.valid_data, _cfg(), CPU)
    row = validate(loop, loader, setup, CPU)
    half, full = predict(loop.model, loader, CPU, torch.bfloat16), predict(loop.model, loader, CPU)
    assert row["valid_loss"] == half.loss != full.loss  # bfloat16 rounding shows in the loss


def test_the_epoch_means_are_over_the_items_of_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes: the other one's sums come in through a stand-in all-reduce (a sum)."""
    other = {"loss": 1.0, "loss_task": 0.5, "items": 2.0}

    def all_reduce(values: torch.Tensor) -> None:
        values += torch.tensor([other["loss"], other["loss_task"], other["items"]], dtype=torch.float64)

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    mine = {"loss": 6.0, "loss_task": 3.0, "items": 4.0}
    assert _reduce_means(mine, Dist(0, 2)) == {"train_loss": 7.0 / 6, "train_loss_task": 3.5 / 6}
    assert _reduce_means(mine, CPU) == {"train_loss": 6.0 / 4, "train_loss_task": 3.0 / 4}  # one process: its own
