"""`hcm ablate` on a tiny synthetic cache: settings planning, the table files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.apps.ablate import Setting, expand_switches, format_cell, plan_settings
from hcm.cli import app
from hcm.model.config import READING_SWITCHES, ModelConfig

runner = CliRunner()
SMALL = ["--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1", "--set", "ot_iters=5",
         "--set", "batch_size=16"]


def test_plan_shares_the_full_model_between_both_tables() -> None:
    rows = plan_settings(["full", "no-cdc"], ["tva", "at", "va"])
    assert rows == [Setting("variant", "full", "tva"), Setting("variant", "no-cdc", "tva"),
                    Setting("modalities", "full", "ta"), Setting("modalities", "full", "va")]
    assert [r.title for r in rows] == ["HCMNet (full)", "w/o CDC", "A+T", "V+A"]
    assert plan_settings([], ["tva"]) == [Setting("modalities", "full", "tva")]


@pytest.mark.parametrize("variants, modalities, message", [
    (["no-att"], [], "unknown variant"), ([], ["tx"], "two or three of the letters"), ([], [], "nothing to run")])
def test_plan_rejects_unknown_settings(variants: list, modalities: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_settings(variants, modalities)


def test_cells_show_mean_and_std() -> None:
    assert format_cell("mae", {"mean": 0.81234, "std": 0.02, "n": 3}) == "0.812 ± 0.020"
    assert format_cell("acc2_non0", {"mean": 0.5, "std": 0.0, "n": 1}) == "50.00"
    assert format_cell("corr", {"mean": float("nan"), "std": 0.0, "n": 2}) == "-"


@pytest.mark.slow
def test_ablate_writes_the_table(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    result = runner.invoke(app, ["ablate", "--epochs", "1", "--variants", "full,acm-only", "--modalities", "",
                                 "--quiet", *SMALL])
    assert result.exit_code == 0, result.output
    assert "HCMNet (full)" in result.output and "ACM-only" in result.output and "MAE" in result.output
    (folder,) = (workdir / "runs" / "sample").iterdir()
    assert folder.name.endswith("-ablation")
    summary = json.loads((folder / "ablation.json").read_text())
    assert [s["slug"] for s in summary["settings"]] == ["full-tva", "acm-only-tva"]
    for setting in summary["settings"]:
        (row,) = setting["per_seed"]
        assert (Path(row["run"]) / "checkpoints" / "best.pt").is_file()
        assert setting["metrics"]["mae"]["mean"] == pytest.approx(row["mae"])
    markdown = (folder / "ablation.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert table[0].split("|")[3].strip() == "MAE↓" and len(table) == 2 + 2 + 1  # header, rule, 2 rows, baseline
    assert "| Variant (Table 4, T+V+A) | ACM-only |" in markdown and "Trivial baseline" in markdown


def test_ablate_without_a_cache_is_a_clear_error(workdir: Path) -> None:
    result = runner.invoke(app, ["ablate", "--epochs", "1", "--variants", "full"])
    assert result.exit_code == 1 and "no feature cache" in result.output


def test_reading_rows_fix_every_switch() -> None:
    rows = plan_settings([], [], ["paper", "hcm"], ["gcn_residual"])
    assert [r.slug for r in rows] == ["paper", "hcm", "paper+gcn_residual"]
    assert [r.title for r in rows] == ["`paper` reading", "`hcm` reading", "`paper` + gcn_residual=True"]
    base = {"d_model": 16, "atomic_fusion": "tensor"}  # a switch in the base settings is overridden
    paper, hcm, one = (ModelConfig.from_dict(r.model_settings(base)) for r in rows)
    assert paper.departures() == [] and paper.d_model == 16
    assert hcm.departures() == [sw.name for sw in READING_SWITCHES]
    assert one.departures() == ["gcn_residual"]


def test_switches_are_checked_and_expanded() -> None:
    every = [sw.name for sw in READING_SWITCHES if sw.name != "node_count"]
    assert expand_switches(["all"], "regression") == every
    assert expand_switches(["all"], "classification") == [s for s in every if s != "output_mapping"]
    with pytest.raises(ValueError, match="unknown switch"):
        expand_switches(["gcn_skip"])
    with pytest.raises(ValueError, match="node_count: native node counts need"):
        expand_switches(["node_count"])
    with pytest.raises(ValueError, match="unknown variant\\(s\\) or reading"):
        plan_settings([], [], ["literal"])


@pytest.mark.slow
def test_ablate_readings_over_two_caches(workdir: Path, tiny_cache) -> None:
    for name in ("a", "b"):
        tiny_cache(workdir / "features" / "sample" / name)
    result = runner.invoke(app, ["ablate", "--epochs", "1", "--readings", "paper", "--switches", "cost_fusion",
                                 "--features", str(workdir / "features" / "sample" / "a"),
                                 "--features", str(workdir / "features" / "sample" / "b"), "--quiet", *SMALL])
    assert result.exit_code == 0, result.output
    folders = sorted((workdir / "runs" / "sample").iterdir())
    assert len(folders) == 2
    for folder in folders:
        summary = json.loads((folder / "ablation.json").read_text())
        assert [s["slug"] for s in summary["settings"]] == ["paper", "paper+cost_fusion"]
        row = summary["settings"][1]["per_seed"][0]
        config = json.loads((Path(row["run"]) / "config.json").read_text())
        assert config["model"]["cost_fusion"] == "softmax" and config["reading_departures"] == ["cost_fusion"]
        assert "valid_mae" in summary["settings"][0]["metrics"]
        markdown = (folder / "ablation.md").read_text()
        assert "| Reading (full model, T+V+A) | `paper` + cost_fusion=softmax |" in markdown
        assert "valid MAE↓" in markdown
