"""`hcm quickstart` end to end through the CLI: sample -> extract -> train -> evaluate, then a re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hcm_quickstart_tiny import TINY
from typer.testing import CliRunner

from hcm.apps.quickstart import load_quickstart_config
from hcm.cli import app

runner = CliRunner()


def test_shipped_settings_load() -> None:
    cfg = load_quickstart_config()
    assert cfg.profile == "tiny" and cfg.n >= 100 and cfg.compare_modalities == "va"


@pytest.mark.slow
def test_quickstart_end_to_end_and_rerun(workdir: Path, tmp_path: Path) -> None:
    settings = tmp_path / "quickstart.json"
    settings.write_text(json.dumps(TINY))
    result = runner.invoke(app, ["quickstart", "--config", str(settings), "--quiet"])
    assert result.exit_code == 0, result.output
    for step in ("1/4 sample corpus", "2/4 extract features", "3/4 train", "4/4 evaluate"):
        assert step in result.output
    assert "HCMNet T+V+A" in result.output and "HCMNet V+A" in result.output and "baseline" in result.output
    runs = sorted((workdir / "runs" / "sample").iterdir())
    assert len(runs) == 2
    assert sorted(run.name.split("-", 2)[2] for run in runs) == ["full", "full-va"]  # the V+A run says so
    full = max(runs, key=lambda run: (run / "config.json").stat().st_mtime)
    report = json.loads((full / "quickstart.json").read_text())
    assert json.loads((full / "config.json").read_text())["model"]["modalities"] == "tva"
    assert set(report["test"]) == {"tva", "va"} and len(report["checks"]) == 3
    assert (full / "eval" / "test" / "metrics.json").is_file()
    assert len(list((workdir / "features" / "sample" / "quickstart").glob("shard-*.h5"))) == 3

    again = runner.invoke(app, ["quickstart", "--config", str(settings), "--quiet"])
    assert again.exit_code == 0, again.output
    assert "reusing the sample corpus" in again.output
    assert "0 written, 3 already complete" in again.output
    assert len(list((workdir / "runs" / "sample").iterdir())) == 4

    # A cache made with other settings (an older hcm's tiny encoders) is the quickstart's own: made again.
    manifest_file = workdir / "features" / "sample" / "quickstart" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["recipe"]["profile"]["sampling"]["audio_rate"] = 44100
    manifest["recipe_hash"] = "0" * 64
    manifest_file.write_text(json.dumps(manifest))
    third = runner.invoke(app, ["quickstart", "--config", str(settings), "--quiet"])
    assert third.exit_code == 0, third.output
    assert "was extracted with other settings; extracting it again" in third.output
    assert "3 written, 0 already complete" in third.output
    assert json.loads(manifest_file.read_text())["recipe_hash"] != "0" * 64


def test_bad_settings_file_is_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    settings = tmp_path / "quickstart.json"
    settings.write_text(json.dumps({**TINY, "trian": {}}))
    result = runner.invoke(app, ["quickstart", "--config", str(settings)])
    assert result.exit_code == 1 and "unknown section(s) ['trian']" in result.output


@pytest.mark.slow
def test_shipped_quickstart_passes_its_checks(workdir: Path) -> None:
    """The README's main job as shipped (300 clips; its time: docs/quickstart.md): the full model clearly beats
    the trivial baselines and its V+A variant on the sample's test split."""
    result = runner.invoke(app, ["quickstart", "--quiet"])
    assert result.exit_code == 0, result.output
    full = max((workdir / "runs" / "sample").iterdir(), key=lambda run: (run / "config.json").stat().st_mtime)
    checks = json.loads((full / "quickstart.json").read_text())["checks"]
    assert len(checks) == 3 and all(entry["passed"] for entry in checks), checks
