"""The training loop: a short run, resume equivalence, best epoch on valid only, non-finite loss."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from hcm.model.config import ModelConfig
from hcm.training.checkpoints import load_checkpoint
from hcm.training.evaluate import load_run_model
from hcm.training.faults import NonFiniteLossError
from hcm.training.runs import RunPaths
from hcm.training.settings import TrainConfig
from hcm.training.trainer import train


@pytest.fixture(scope="module")
def cache(tiny_cache) -> Path:
    return tiny_cache()


@pytest.fixture
def run(tiny_facts, tiny_net):
    """``run(cache, run_dir, cfg, **kw)``: trains the stand-in model on the tiny regression facts."""
    def _run(cache: Path, run_dir: Path, cfg: TrainConfig, **kw):
        return train(cache, run_dir, cfg, ModelConfig(), facts=tiny_facts(), model_factory=tiny_net.factory,
                     progress=False, **kw)
    return _run


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=8, lr=0.02, patience=0, seed=3, warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def test_short_run_writes_the_run_directory(cache: Path, tmp_path: Path, run) -> None:
    result = run(cache, tmp_path / "run", _cfg())
    root = result.run_dir
    assert result.epochs_run == 3 and 1 <= result.best_epoch <= 3 and result.key_metric == "mae"
    rows = list(csv.DictReader(open(root / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_loss_task", "valid_loss", "valid_mae", "valid_corr", "lr"} <= set(rows[0])
    assert (root / "checkpoints" / "last.pt").is_file() and (root / "checkpoints" / "best.pt").is_file()
    assert (root / "curves.png").stat().st_size > 0
    if importlib.util.find_spec("tensorboard") is not None:  # event files only where it is installed
        assert any((root / "tensorboard").iterdir())
    else:
        assert not (root / "tensorboard").exists()
    best = load_checkpoint(root / "checkpoints" / "best.pt")
    assert best["epoch"] == result.best_epoch and best["config"]["profile"] == "tiny"
    last_path, best_path = root / "checkpoints" / "last.pt", root / "checkpoints" / "best.pt"
    assert set(best) == {"model", "epoch", "best_value", "best_epoch", "best_valid", "config"}  # no resume state
    assert {"optimizer", "scheduler", "rng", "history"} <= set(load_checkpoint(last_path))
    assert best_path.stat().st_size < last_path.stat().st_size / 2
    shutil.copyfile(last_path, best_path)  # a best.pt of earlier versions held the whole state: it still loads
    config = json.loads((root / "config.json").read_text())
    model, epoch = load_run_model(RunPaths(root), config, "best", torch.device("cpu"))
    assert epoch == load_checkpoint(last_path)["epoch"] and not model.training
    assert float(rows[0]["train_loss"]) > float(rows[-1]["train_loss"])  # it learns


class Interrupt(Exception):
    pass


def _interrupt_after(epoch: int):
    def callback(done: int, row: dict) -> None:
        if done == epoch:
            raise Interrupt(f"stopped after epoch {done}")
    return callback


def test_resume_reaches_the_same_weights_and_metrics(cache: Path, tmp_path: Path, run) -> None:
    full = run(cache, tmp_path / "full", _cfg(num_workers=0))
    with pytest.raises(Interrupt):
        run(cache, tmp_path / "cut", _cfg(), callbacks=[_interrupt_after(1)])
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = run(cache, tmp_path / "cut", _cfg(), resume=True)
    assert [r["valid_mae"] for r in resumed.history] == [r["valid_mae"] for r in full.history]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.best_epoch == full.best_epoch and resumed.best_value == full.best_value


@pytest.mark.slow  # two short HCMNet runs, ~25 s on 2 loaded cores
def test_resume_with_hcmnet_and_dropout_repeats_the_uninterrupted_run(cache: Path, tmp_path: Path,
                                                                      tiny_facts) -> None:
    """HCMNet itself (dropout 0.5): the dropout masks after the resume come from the restored RNG
    state, so an interrupted and resumed run ends with the uninterrupted run's weights."""
    model_cfg = ModelConfig(d_model=8, num_heads=2, m_ctn=2, m_gcn=1, m_c=1, ot_iters=5, dropout=0.5)

    def hcmnet(run_dir: Path, **kw):
        return train(cache, run_dir, _cfg(epochs=2, num_workers=0), model_cfg, facts=tiny_facts(), progress=False,
                     **kw)

    full = hcmnet(tmp_path / "full")
    with pytest.raises(Interrupt):
        hcmnet(tmp_path / "cut", callbacks=[_interrupt_after(1)])
    torch.manual_seed(12345)  # the resumed run must not depend on the RNG state it starts in
    resumed = hcmnet(tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in _run_modules(tmp_path / "full"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]


def _run_modules(run_dir: Path) -> list[torch.nn.Module]:
    """The modules of the model a run folder holds (to show that it has dropout layers)."""
    config = json.loads((run_dir / "config.json").read_text())
    model, _ = load_run_model(RunPaths(run_dir), config, "last", torch.device("cpu"))
    return list(model.modules())


def test_best_epoch_is_chosen_on_valid_only(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    """Valid MAE is scripted to be best at epoch 2 while test MAE would be best at epoch 4."""
    import hcm.training.trainer as trainer

    valid_mae = iter([0.9, 0.5, 0.7, 0.8])
    real = trainer.validate

    def scripted(loop, loader, setup, d):
        row = real(loop, loader, setup, d)
        assert setup.valid_data.ids[0].startswith("clip03")  # the valid split, never test
        row["valid_mae"] = next(valid_mae)
        return row

    monkeypatch.setattr(trainer, "validate", scripted)
    result = run(cache, tmp_path / "run", _cfg(epochs=4))
    assert result.best_epoch == 2 and result.best_value == 0.5
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["epoch"] == 2


def test_early_stopping_with_patience(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    import hcm.training.trainer as trainer

    real, values = trainer.validate, iter([0.5, 0.6, 0.7, 0.4, 0.3])
    monkeypatch.setattr(trainer, "validate", lambda *a: {**real(*a), "valid_mae": next(values)})
    result = run(cache, tmp_path / "run", _cfg(epochs=5, patience=2))
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(cache: Path, tmp_path: Path, run, tiny_net,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_forward = tiny_net.cls.forward

    def poisoned(self, batch):
        out = real_forward(self, batch)
        calls["n"] += 1
        if self.training and calls["n"] > 8:  # epoch 1 has 4 train steps + 1 valid batch
            out.loss = out.loss * math.nan
        return out

    monkeypatch.setattr(tiny_net.cls, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step \d+.*last good checkpoint is kept"):
        run(cache, tmp_path / "run", _cfg())
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values())


def test_evaluation_baseline_is_fitted_on_the_train_split_only(cache: Path, tmp_path: Path, run) -> None:
    """The baseline row of `hcm evaluate` predicts the train mean (by hand here), on test and on valid."""
    import io

    import numpy as np
    from rich.console import Console

    from hcm.cache import FeatureCache
    from hcm.training.evaluate import evaluate_run

    result = run(cache, tmp_path / "run", _cfg(epochs=1))
    train_mean = float(np.mean(FeatureCache(cache, split="train", features=[]).labels))
    for split in ("test", "valid"):
        truth = np.asarray(FeatureCache(cache, split=split, features=[]).labels, dtype=np.float64)
        report = evaluate_run(result.run_dir, split, device="cpu", console=Console(file=io.StringIO()))
        fitted_on_split = float(np.mean(np.abs(truth - truth.mean())))
        expected = float(np.mean(np.abs(truth - train_mean)))
        assert abs(expected - fitted_on_split) > 1e-3  # the two fits differ on this cache
        assert report["baseline"]["mae"] == pytest.approx(expected, rel=1e-6), split
