"""Messages that say the right thing: the option a command really has, training's closing words, the
progress bar's loss (the logged train_loss), a resumed extraction with nothing to do."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hcm_tiny_cache import build_cache
from hcm_tiny_model import tiny_facts

from hcm.apps.train import train_summary
from hcm.model.config import ModelConfig
from hcm.pipeline.extract import ExtractSummary
from hcm.pipeline.shards import ShardCounts
from hcm.pipeline.weights import WeightOptions, WeightSpec, find_weight
from hcm.training import trainer
from hcm.training.trainer import TrainConfig, train


def test_missing_text_model_names_the_import_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = WeightSpec("roberta", "RoBERTa", (), option="--roberta", hub="roberta-large")
    found, problem = find_weight(spec, WeightOptions(options={"roberta": "--text-model"}))
    assert found is None and "pass --text-model FOLDER" in problem and "--roberta" not in problem
    assert "nowhere" not in problem and "no --weights-dir was given" in problem
    _, problem = find_weight(spec, WeightOptions())
    assert "pass --roberta FOLDER" in problem  # hcm extract's option stays


def test_training_closing_words_say_how_it_ended() -> None:
    result = SimpleNamespace(run_dir=Path("/w/runs/r"), best_epoch=13, epochs_run=15, stopped_early=False,
                             key_metric="mae", best_value=0.7)
    text = train_summary(result, 1.0, 15)
    assert "best epoch 13 of 15 (all 15 planned epochs ran)" in text and "(all epochs)" not in text
    early = train_summary(SimpleNamespace(**{**vars(result), "epochs_run": 9, "stopped_early": True}), 1.0, 15)
    assert "best epoch 13 of 9 (early stopping ended it before the 15 planned epochs" in early


def test_progress_bar_loss_is_the_logged_train_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[dict] = []

    class Bar:  # records what the epoch bar would show
        tasks: list = []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, description, **fields):
            shown.append({})
            return len(shown) - 1

        def update(self, task, **fields):
            shown[task].update(fields)

    monkeypatch.setattr(trainer, "epoch_progress", lambda enabled: Bar())
    cache = build_cache(tmp_path / "sample" / "tiny", n=24)
    result = train(cache, tmp_path / "run", TrainConfig(epochs=2, batch_size=5, seed=1), ModelConfig(),
                   facts=tiny_facts(), model_factory="hcm_tiny_model:TinyNet", progress=True)
    assert [bar["loss"] for bar in shown] == [f"{row['train_loss']:.4f}" for row in result.history]


def test_a_resumed_extraction_with_nothing_to_do_reports_no_rate(tmp_path: Path) -> None:
    summary = ExtractSummary("mosei", "tiny", tmp_path, "float32", planned=54059, extracted=54059,
                             shards=ShardCounts(total=55, mine=55, resumed=55), seconds=1.2, loop_seconds=0.001)
    text = summary.format()
    assert "items/s" not in text and "nothing left to extract" in text
    busy = ExtractSummary("mosei", "tiny", tmp_path, "float32", planned=100, extracted=100, seconds=3.0,
                          loop_seconds=2.0, processed=50)
    assert "then 25.0 items/s" in busy.format()


def test_sample_says_its_disk_and_time_up_front_and_refuses_what_does_not_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import shutil

    from hcm.core.errors import UsageError
    from hcm.pipeline.sample.registry import check_room, get_sample, make_sample

    make_sample("mosei", tmp_path / "small", n=6, progress=True)
    announced = capsys.readouterr().err
    assert "mosei: 6 utterances, about 204.0 KB of disk" in announced
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10_000_000))
    with pytest.raises(UsageError, match=r"--n 1,000 mosei utterances need about 34.0 MB of disk, and .* has 10.0 MB"):
        check_room(get_sample("mosei"), 1000, tmp_path / "big")
    with pytest.raises(UsageError):
        make_sample("mosei", tmp_path / "big", n=100_000_000, progress=False)
    assert not (tmp_path / "big").exists()  # refused before any work (planning 10^8 would take hours)
