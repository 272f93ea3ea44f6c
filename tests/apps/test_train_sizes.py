"""``hcm train`` sizes the model for the cache's extraction profile: ``small`` for tiny caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.apps.train import resolve_settings
from hcm.cli import app
from hcm.core.errors import UsageError
from hcm.model.config import ModelConfig
from hcm.training.settings import load_hparams, model_size_for


def test_auto_size_follows_the_cache_profile() -> None:
    assert model_size_for("auto", "tiny") == "small" and model_size_for("auto", "mmsa-tiny") == "small"
    assert model_size_for("auto", "paper") == "paper" and model_size_for("paper", "tiny") == "paper"
    with pytest.raises(UsageError, match="model size 'huge'"):
        model_size_for("huge", "tiny")


def test_a_tiny_cache_gets_the_small_model_and_overrides_still_win() -> None:
    paper_width = load_hparams("mosei")["model"]["d_model"]
    assert paper_width == 256
    _, small = resolve_settings("mosei", {}, profile="tiny")
    _, paper = resolve_settings("mosei", {}, profile="paper")
    _, forced = resolve_settings("mosei", {}, profile="tiny", size="paper")
    _, overridden = resolve_settings("mosei", {"d_model": 64}, profile="tiny")
    assert (small["d_model"], small["m_c"]) == (32, 2)
    assert paper["d_model"] == forced["d_model"] == paper_width and paper["m_c"] == 8
    assert overridden["d_model"] == 64
    assert small["reading"] == paper["reading"] == "paper"  # the size changes widths, not the equations


@pytest.mark.parametrize("dataset", ["mosei", "meld", "iemocap"])
def test_the_small_size_keeps_the_paper_reading_and_trains_in_small_batches(dataset: str) -> None:
    train, model = resolve_settings(dataset, {}, profile="tiny")
    assert ModelConfig.from_dict(model).departures() == []  # no size switches an equation to hcm's form
    assert (train["batch_size"], train["lr"]) == (16, 1e-3)  # configs/model_sizes.json, with reasons
    paper_train, _ = resolve_settings(dataset, {}, profile="paper")
    assert (paper_train["batch_size"], paper_train["lr"]) == (64, 2e-4)


def test_hcm_train_on_a_tiny_cache_records_the_small_model(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--epochs", "1", "--quiet", "--model-size", "small",
                                 "--set", "m_gcn=1", "--set", "ot_iters=3"])
    assert result.exit_code == 0, result.output
    (config,) = (workdir / "runs" / "sample").glob("*/config.json")
    model = json.loads(config.read_text())["model"]
    assert model["d_model"] == 32 and model["m_gcn"] == 1
    bad = runner.invoke(app, ["train", "--model-size", "huge"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
