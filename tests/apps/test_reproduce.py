"""`hcm reproduce` on a tiny synthetic cache: the checks before any work, the results folder
against the runs' own metrics, and a second call that finds its runs."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.apps.reproduce import ReproduceRequest, plan
from hcm.cli import app
from hcm.core.errors import UsageError
from hcm.core.workspace import Workspace

runner = CliRunner()
SMALL = ["--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1", "--set", "ot_iters=5", "--set", "batch_size=16"]


def test_plan_names_every_departure_from_the_paper(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    planned = plan(Workspace(workdir), ReproduceRequest(dataset="mosei", seeds=[1], epochs=1))
    notes = " ".join(planned.notes)
    assert "NOT THE PAPER'S DATASET: the cache holds 'sample'" in notes
    assert "NOT THE PAPER'S FEATURES" in notes and "'tiny' profile" in notes
    assert "train.epochs=1" in notes and "One seed" in notes
    assert planned.folder.parent == workdir / "runs" / "sample" and planned.folder.name.startswith("reproduce-mosei-")
    again = plan(Workspace(workdir), ReproduceRequest(dataset="mosei", seeds=[2, 3], epochs=1))
    other = plan(Workspace(workdir), ReproduceRequest(dataset="mosei", seeds=[1], epochs=2))
    assert again.folder == planned.folder and other.folder != planned.folder  # named by the settings


@pytest.mark.parametrize("request_, message", [
    (ReproduceRequest(dataset="sample"), "the paper reports no numbers for 'sample'"),
    (ReproduceRequest(), "holds 'sample', for which the paper reports no numbers; pass --dataset"),
    (ReproduceRequest(dataset="meld"), "is a regression cache, but the paper's meld numbers are classification"),
    (ReproduceRequest(dataset="mosei", variants=["no-att"]), "unknown --variants"),
    (ReproduceRequest(dataset="mosei", seeds=[1, 1]), "lists a seed twice"),
])
def test_bad_requests_are_refused_before_any_work(workdir: Path, tiny_cache, request_, message: str) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    with pytest.raises(UsageError, match=message):
        plan(Workspace(workdir), request_)
    assert not (workdir / "runs").exists()


@pytest.mark.slow
def test_reproduce_writes_the_comparison_and_finds_its_runs_again(workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    args = ["reproduce", "--dataset", "mosei", "--seeds", "1,2", "--epochs", "1", "--latex", "--quiet", *SMALL]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "NOT THE PAPER'S FEATURES" in result.output
    (folder,) = (workdir / "runs" / "sample").glob("reproduce-mosei-????????")
    assert {p.name for p in folder.iterdir()} == {"results.md", "results.csv", "results.json", "results.png",
                                                   "results.tex"}
    summary = json.loads((folder / "results.json").read_text())
    entries = {e["metric"]: e for e in summary["variants"]["full"]}
    assert list(entries) == ["mae", "corr", "acc7", "acc2_non0", "f1_non0"]  # Table 3's columns
    runs = [Path(r) for r in summary["runs"]["full"]]
    assert [r.name for r in runs] == [f"{folder.name}-full-s1", f"{folder.name}-full-s2"]
    tested = [json.loads((r / "eval" / "test" / "metrics.json").read_text())["metrics"] for r in runs]
    mae = entries["mae"]
    assert mae["per_seed"] == pytest.approx([t["mae"] for t in tested])
    assert mae["mean"] == pytest.approx(sum(t["mae"] for t in tested) / 2)
    assert mae["paper"] == pytest.approx(0.489) and mae["diff"] == pytest.approx(mae["mean"] - 0.489)
    assert entries["acc7"]["paper"] == pytest.approx(0.5497)
    markdown = (folder / "results.md").read_text()
    assert all(len(line) <= 80 for line in markdown.splitlines() if line.startswith("|"))
    assert "| MAE (T3)" in markdown and "0.489" in markdown
    with open(folder / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    paper_acc7 = [r for r in rows if r["metric"] == "acc7" and r["row"] == "paper"]
    assert float(paper_acc7[0]["value"]) == pytest.approx(54.97)
    assert r"\begin{tabular}" in (folder / "results.tex").read_text()

    # Again: the evaluated seed is skipped; seed 2, whose evaluation is missing, is resumed
    # from its checkpoint (nothing left to train) and evaluated again.
    best = [(r / "checkpoints" / "best.pt").stat().st_mtime_ns for r in runs]
    shutil.rmtree(runs[1] / "eval")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [(r / "checkpoints" / "best.pt").stat().st_mtime_ns for r in runs] == best
    assert (runs[1] / "eval" / "test" / "metrics.json").is_file()
    again = json.loads((folder / "results.json").read_text())
    assert again["variants"]["full"][0]["per_seed"] == pytest.approx(mae["per_seed"])
    assert len(list((workdir / "runs" / "sample").iterdir())) == 3

    listed = runner.invoke(app, ["runs", "--json"])
    assert listed.exit_code == 0 and f"{folder.name}-full-s1" in listed.output
    assert not any(math.isnan(v) for v in mae["per_seed"])
