"""A run folder cannot make hcm import code: the model comes from the registry by name, an
outside ``module:Name`` only with --trust-model-code, and config.json is checked first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cli import app
from hcm.core.errors import UsageError
from hcm.model.hcmnet import build_model
from hcm.training.evaluate import evaluate_run
from hcm.training.model_source import UntrustedModelError, check_run_config, model_factory

runner = CliRunner()
CONFIG = {"model_factory": "hcmnet", "model": {}, "facts": {}, "data": {}, "train": {"batch_size": 4},
          "cache": "nowhere", "recipe_hash": "x"}


@pytest.fixture
def evil_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A downloaded run folder whose config names a module it carries (importable from the cwd)."""
    marker = tmp_path / "ran"
    run = tmp_path / "evilrun"
    run.mkdir()
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nBoom = print\n")
    (run / "config.json").write_text(json.dumps({**CONFIG, "model_factory": "evilmod:Boom"}))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    return run, marker


def test_registered_names_and_earlier_paths_need_no_import() -> None:
    assert model_factory("hcmnet") is build_model
    assert model_factory("hcm.model.hcmnet:build_model") is build_model  # what earlier runs recorded


@pytest.mark.parametrize("name", ["os:system", "builtins:exec", "subprocess:Popen", "evilmod:Boom"])
def test_outside_factories_are_refused_without_importing(evil_run: tuple[Path, Path], name: str) -> None:
    with pytest.raises(UntrustedModelError, match=rf"{name}.*nothing was imported.*--trust-model-code"):
        model_factory(name, source="evilrun/config.json")
    assert "evilmod" not in sys.modules and not evil_run[1].exists()


def test_evaluate_refuses_the_run_and_imports_nothing(evil_run: tuple[Path, Path]) -> None:
    run, marker = evil_run
    with pytest.raises(UntrustedModelError, match="evilmod:Boom"):
        evaluate_run(run)
    result = runner.invoke(app, ["evaluate", "--run", str(run)])
    assert result.exit_code == 2 and "--trust-model-code" in result.output, result.output
    assert not marker.exists() and "evilmod" not in sys.modules


def test_trust_model_code_imports_with_a_warning(evil_run: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    run, marker = evil_run
    assert model_factory("evilmod:Boom", trust_code=True) is print
    assert marker.exists() and "runs" in caplog.text  # the flag is what lets the module's code run


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("model_factory"), "model_factory is missing"),
    (lambda c: c.__setitem__("model", [1]), "model is a list"),
    (lambda c: c.__setitem__("model_factory", {"module": "os"}), "model_factory is a dict"),
    (lambda c: c["train"].__setitem__("batch_size", -3), r"train.batch_size is -3"),
])
def test_run_configs_are_checked_before_use(tmp_path: Path, change, message: str) -> None:
    config = json.loads(json.dumps(CONFIG))
    change(config)
    with pytest.raises(UsageError, match=rf"config.json is not a valid run config: {message}"):
        check_run_config(config, tmp_path / "config.json")
    with pytest.raises(UsageError, match="holds a list"):
        check_run_config([], tmp_path / "config.json")


def test_resume_refuses_a_run_naming_outside_code_unless_named_again(evil_run: tuple[Path, Path]) -> None:
    run, marker = evil_run
    result = runner.invoke(app, ["train", "--resume", "--run", str(run)])
    assert result.exit_code == 2 and "pass --model-factory evilmod:Boom with --resume" in result.output, result.output
    assert not marker.exists() and "evilmod" not in sys.modules
