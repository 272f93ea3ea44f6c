"""`hcm train` and `hcm evaluate` end to end through the CLI, on a tiny cache with the real HCMNet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cli import app
from hcm.training.evaluate import ProfileMismatchError, check_cache_matches

runner = CliRunner()


@pytest.mark.slow
def test_train_then_evaluate_the_latest_run(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    result = runner.invoke(app, ["train", "--epochs", "2", "--batch-size", "16", "--quiet",
                                 "--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1"])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "sample").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["model"]["d_model"] == 16
    assert config["profile"] == "tiny" and len(config["recipe_hash"]) == 64
    assert len((run / "metrics.csv").read_text().splitlines()) == 3

    result = runner.invoke(app, ["evaluate", "--split", "test", "--tsne"])
    assert result.exit_code == 0, result.output
    assert "MAE" in result.output and "baseline" in result.output
    report = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert report["items"] == 8 and {"mae", "acc2_non0", "f1_has0"} <= set(report["metrics"])
    assert report["baseline"]["corr"] is None  # a constant has no correlation
    assert len((run / "eval" / "test" / "predictions.csv").read_text().splitlines()) == 9
    assert (run / "eval" / "test" / "tsne.png").is_file()


def test_evaluate_refuses_a_cache_of_another_profile(workdir: Path, tiny_cache) -> None:
    tiny = tiny_cache(workdir / "features" / "sample" / "tiny")
    paper = tiny_cache(workdir / "features" / "sample" / "paper", profile="paper")
    config = {"dataset": "sample", "profile": "tiny", "cache": str(tiny), "recipe_hash": "0" * 64}
    with pytest.raises(ProfileMismatchError, match="profile 'tiny' but cache .* is profile 'paper'"):
        check_cache_matches(config, paper)
    check_cache_matches(config, tiny)  # same profile: accepted (another recipe only warns)


def test_train_asks_for_a_cache_when_there_are_several(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    tiny_cache(workdir / "features" / "sample" / "paper", profile="paper")
    result = runner.invoke(app, ["train", "--epochs", "1"])
    assert result.exit_code == 1 and "--features" in result.output and "paper" in result.output


def test_unknown_setting_is_a_clear_error(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    result = runner.invoke(app, ["train", "--set", "droput=0.2"])
    assert result.exit_code == 2 and "unknown setting 'droput'" in result.output  # usage error
