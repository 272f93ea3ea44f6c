"""Training under faults: stop signals mid-epoch, non-finite numbers, runs that cannot be resumed,
a cache that disappears (docs/training.md, "Faults")."""

from __future__ import annotations

import math
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from hcm_tiny_cache import build_cache, plant_nan
from hcm_tiny_model import TinyNet, tiny_facts

from hcm.model.config import ModelConfig
from hcm.training import TrainingError
from hcm.training.checkpoints import load_checkpoint
from hcm.training.faults import NonFiniteLossError, TrainingInterrupted, config_differences
from hcm.training.settings import TrainConfig
from hcm.training.trainer import train

FACTORY = "hcm_tiny_model:TinyNet"
STEPS = 4  # 32 train items, batch 8


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cache(tmp_path_factory.mktemp("cache") / "sample" / "tiny")


@pytest.fixture
def sigterm_fails_the_test():
    """Code without its own SIGTERM handler fails the test instead of killing pytest."""
    def handler(signum, frame):
        raise AssertionError("SIGTERM reached code that does not handle it")
    previous = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, previous)


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=8, lr=0.02, patience=0, seed=3, warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def _run(cache: Path, run_dir: Path, cfg: TrainConfig, **kw):
    return train(cache, run_dir, cfg, ModelConfig(), facts=tiny_facts(), model_factory=FACTORY, progress=False, **kw)


def _signal_at_training_call(monkeypatch: pytest.MonkeyPatch, signum: int, call: int) -> None:
    """Send ``signum`` to this process during the ``call``-th training forward pass."""
    real, calls = TinyNet.forward, {"n": 0}

    def forward(self, batch):
        if self.training:
            calls["n"] += 1
            if calls["n"] == call:
                os.kill(os.getpid(), signum)
        return real(self, batch)

    monkeypatch.setattr(TinyNet, "forward", forward)


def test_sigterm_mid_epoch_checkpoints_and_resumes_to_the_same_metrics(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_fails_the_test) -> None:
    sigint = signal.getsignal(signal.SIGINT)  # Python's handler, or SIG_IGN where pytest started in the background
    full = _run(cache, tmp_path / "full", _cfg())
    _signal_at_training_call(monkeypatch, signal.SIGTERM, STEPS + 2)  # epoch 2, step 2
    stopped = r"(?s)SIGTERM at epoch 2, step 2.*hcm train --resume --run /"
    with pytest.raises(TrainingInterrupted, match=stopped) as caught:
        _run(cache, tmp_path / "cut", _cfg())
    assert caught.value.exit_code == 143
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 2) and state["partial"][0]["items"] == 16
    resumed = _run(cache, tmp_path / "cut", _cfg(), resume=True)
    assert resumed.history == full.history
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert signal.getsignal(signal.SIGINT) is sigint  # handlers are put back


def test_sigint_exits_with_130(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _signal_at_training_call(monkeypatch, signal.SIGINT, 3)
    with pytest.raises(TrainingInterrupted, match="SIGINT at epoch 1, step 3") as caught:
        _run(cache, tmp_path / "run", _cfg(epochs=1))
    assert caught.value.exit_code == 130


def test_a_nan_feature_row_stops_with_its_item_id_then_resumes_skipping_it(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "sample" / "tiny")
    plant_nan(cache, "clip005")
    cfg = _cfg(epochs=2, standardise_streams=False)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, step \d .*clip005.*"
                                                 r"last good checkpoint is kept.*--skip-nonfinite 1") as caught:
        _run(cache, tmp_path / "run", cfg)
    assert "clip005" in str(caught.value)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")  # the state before the bad batch
    assert state["epoch"] == 0 and 0 <= state["step"] < STEPS
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    with pytest.raises(NonFiniteLossError, match="at epoch 2"):  # a budget of 1 covers epoch 1 only
        _run(cache, tmp_path / "run", _cfg(epochs=2, standardise_streams=False, skip_nonfinite=1), resume=True)
    done = _run(cache, tmp_path / "run", _cfg(epochs=2, standardise_streams=False, skip_nonfinite=2), resume=True)
    assert [row["train_skipped"] for row in done.history] == [1, 1]
    assert all(math.isfinite(row["train_loss"]) for row in done.history)
    skipped = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["skipped"]
    assert [(s["epoch"], "clip005" in s["items"]) for s in skipped] == [(1, True), (2, True)]


def test_a_nan_row_in_the_train_split_is_named_before_training(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "sample" / "tiny")
    plant_nan(cache, "clip005")
    with pytest.raises(TrainingError, match=r"train split .* NaN or infinite values in the streams \['roberta'\]"):
        _run(cache, tmp_path / "run", _cfg(epochs=1))


def test_a_non_finite_gradient_with_a_finite_loss_is_caught(cache: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = TinyNet.forward, {"n": 0}

    def forward(self, batch):
        out = real(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                self.head.weight.register_hook(lambda grad: grad * math.inf)
        return out

    monkeypatch.setattr(TinyNet, "forward", forward)
    with pytest.raises(NonFiniteLossError, match=r"gradient norm became (nan|inf) at epoch 1, step 3"):
        _run(cache, tmp_path / "run", _cfg(epochs=1))


def test_resume_without_a_checkpoint_says_so(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(TrainingError, match=r"has no checkpoint yet .*nothing to resume"):
        _run(cache, run, _cfg(), resume=True)
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # nothing started over


def test_resume_refuses_changed_settings_or_another_cache(cache: Path, tmp_path: Path) -> None:
    _run(cache, tmp_path / "run", _cfg(epochs=1))
    with pytest.raises(TrainingError, match=r"no longer match.*train\.lr: 0\.02 in the checkpoint, 0\.01 now"):
        _run(cache, tmp_path / "run", _cfg(epochs=2, lr=0.01), resume=True)
    other = build_cache(tmp_path / "other" / "sample" / "tiny", seed=1)
    with pytest.raises(TrainingError, match=r"no longer match.*recipe_hash"):
        _run(other, tmp_path / "run", _cfg(epochs=2), resume=True)


def test_config_differences_lists_each_changed_setting() -> None:
    saved = {"train": {"lr": 0.1, "seed": 1}, "cache": "/a", "created": "t0", "data": {"streams": {"text": ["x"]}}}
    now = {"train": {"lr": 0.1, "seed": 2}, "cache": "/b", "created": "t1", "data": {"streams": {"text": ["y"]}}}
    assert config_differences(saved, now) == ["data.streams.text: ['x'] in the checkpoint, ['y'] now",
                                              "train.seed: 1 in the checkpoint, 2 now"]


def test_a_cache_deleted_during_training_is_named(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "sample" / "tiny")

    def delete_cache(epoch: int, row: dict) -> None:
        shutil.rmtree(cache)

    with pytest.raises(TrainingError, match=r"cache .*tiny was removed or moved during training \(epoch 2\); "
                                            r".*last.pt \(epoch 1\) is kept.*--resume"):
        _run(cache, tmp_path / "run", _cfg(), callbacks=[delete_cache])
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1
