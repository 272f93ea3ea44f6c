"""A new dataset is one module with its registration line (tests/helpers/hcm_toy_dataset.py) and
one config file (configs/datasets/<name>.json): ``hcm extract`` reads it and ``hcm train`` trains
on the cache."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from hcm.cache import FeatureCache
from hcm.cli import app
from hcm.core.configs import configs_dir
from hcm.pipeline.datasets import base, dataset_names
from hcm.pipeline.sample import make_sample
from hcm.training import settings

runner = CliRunner()


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The toy dataset module imported into a copy of the registry, and its config file in a copy
    of configs/ (both gone again after the test)."""
    configs = tmp_path / "configs"
    shutil.copytree(configs_dir(), configs)
    facts = json.loads((configs / "datasets" / "sample.json").read_text())
    (configs / "datasets" / "toyset.json").write_text(json.dumps({**facts, "name": "toyset"}))
    monkeypatch.setattr(settings, "configs_dir", lambda: configs)
    monkeypatch.setattr(base, "DATASETS", base.DATASETS.copy())
    monkeypatch.delitem(sys.modules, "hcm_toy_dataset", raising=False)
    return importlib.import_module("hcm_toy_dataset")


@pytest.mark.slow
def test_a_registered_toy_dataset_is_extracted_and_trained_through_the_cli(toy: ModuleType, workdir: Path) -> None:
    assert "toyset" in dataset_names()
    root = workdir / "data" / "toyset"
    make_sample("mosei", root, n=12, seed=3, progress=False)
    result = runner.invoke(app, ["extract", "--dataset", "toyset", "--profile", "tiny", "--frames", "2",
                                 "--segments", "2", "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    cache = workdir / "features" / "toyset" / "tiny"
    with FeatureCache(cache) as features:
        assert features.meta.dataset == "toyset" and len(features) == 12
    result = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "4", "--quiet",
                                 "--model-factory", "hcm_tiny_model:TinyNet"])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "toyset").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "toyset" and config["facts"]["name"] == "toyset"
