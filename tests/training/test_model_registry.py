"""Models register with one decorator; ``hcm train --model-factory NAME`` trains a registered model,
and ``module:Name`` still names a model outside hcm."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from hcm.cli import app
from hcm.core.errors import UsageError
from hcm.model import hcmnet, registry
from hcm.training import TrainingError, inference, model_source

runner = CliRunner()


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The toy model module imported into a copy of the model registry (gone again after the test)."""
    models = registry.MODELS.copy()
    monkeypatch.setattr(registry, "MODELS", models)
    monkeypatch.setattr(inference, "MODELS", models)
    monkeypatch.setattr(model_source, "MODELS", models)
    monkeypatch.delitem(sys.modules, "hcm_toy_model", raising=False)
    return importlib.import_module("hcm_toy_model")


def test_hcmnet_is_the_registered_default() -> None:
    assert inference.DEFAULT_MODEL == "hcmnet"
    assert inference.find_factory("HCMNet") is hcmnet.build_model
    assert inference.factory_path(hcmnet.build_model) == "hcmnet"


def test_unknown_names_are_usage_errors_and_module_paths_still_import() -> None:
    with pytest.raises(UsageError, match="unknown model 'hcmnett'; known: .*hcmnet"):
        inference.find_factory("hcmnett")
    assert inference.find_factory("hcm.model.hcmnet:build_model") is hcmnet.build_model  # runs of older hcm
    with pytest.raises(TrainingError, match="cannot import the model factory 'no_such_module:Net'"):
        inference.find_factory("no_such_module:Net")


def test_a_registered_toy_model_trains_and_evaluates_through_the_cli(toy: ModuleType, workdir: Path,
                                                                     tiny_cache) -> None:
    assert inference.find_factory("toy") is toy.ToyNet
    tiny_cache(workdir / "features" / "sample" / "tiny")
    result = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "16", "--quiet", "--model-factory", "toy"])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "sample").iterdir()
    assert json.loads((run / "config.json").read_text())["model_factory"] == "toy"
    result = runner.invoke(app, ["evaluate", "--split", "test"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval" / "test" / "metrics.json").read_text())["items"] == 8
