"""A run folder deleted during training: training stops with one clear error, writes nothing there
again (no half-recreated folder), and TensorBoard's writer thread does not add its own traceback."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from hcm_tiny_cache import build_cache
from hcm_tiny_model import tiny_facts

from hcm.model.config import ModelConfig
from hcm.training.runs import RunFolderGoneError
from hcm.training.trainer import TrainConfig, train


def test_training_stops_when_its_run_folder_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thread_errors: list = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    cache = build_cache(tmp_path / "features" / "sample" / "tiny", n=24)
    run = tmp_path / "runs" / "sample" / "r1"

    def delete_after_first_epoch(epoch: int, row: dict) -> None:
        if epoch == 1:
            shutil.rmtree(run)

    with pytest.raises(RunFolderGoneError, match=r"r1 was deleted or moved during training .* after epoch 2"):
        train(cache, run, TrainConfig(epochs=3, batch_size=8), ModelConfig(), facts=tiny_facts(),
              model_factory="hcm_tiny_model:TinyNet", progress=False, callbacks=[delete_after_first_epoch])
    assert not run.exists() and thread_errors == []
