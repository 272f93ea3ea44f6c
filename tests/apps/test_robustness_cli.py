"""`hcm evaluate --missing/--noise` and cross-corpus evaluation on a small trained run."""

from __future__ import annotations

import json
from pathlib import Path

import hcm_tiny_cache
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hcm.cli import app
from hcm.training.evaluate import evaluate_run

runner = CliRunner()
TEST_IDS = [f"clip{i:03d}" for i in range(40, 48)]  # the test split of the 48-item tiny cache
pytestmark = pytest.mark.slow  # the shared fixture trains two runs


def evaluate(small_runs, *args: str):
    return runner.invoke(app, ["--workdir", str(small_runs.workspace.root), "evaluate", "--run",
                               str(small_runs.full), "--device", "cpu", *args])


def test_missing_and_noise_rows_and_files(small_runs, tmp_path: Path) -> None:
    # the run's own test scores (another test may have evaluated the shared run on another cache)
    assert evaluate(small_runs).exit_code == 0
    result = evaluate(small_runs, "--missing", "all", "--noise", "0.5,2")
    assert result.exit_code == 0, result.output
    assert "missing video+audio" in result.stdout and "noise 2" in result.stdout
    out = small_runs.full / "eval" / "test"
    report = json.loads((out / "robustness.json").read_text())
    names = [row["condition"] for row in report["rows"]]
    assert names == ["clean", "missing text", "missing video", "missing audio", "missing text+video",
                     "missing text+audio", "missing video+audio", "noise 0.5", "noise 2"]
    clean = json.loads((out / "metrics.json").read_text())["metrics"]
    assert report["rows"][0]["metrics"]["mae"] == pytest.approx(clean["mae"], abs=1e-9)
    assert report["rows"][-1]["metrics"]["mae"] != report["rows"][0]["metrics"]["mae"]
    assert (out / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "robustness.csv").read_text().count("\n") == 10
    again = evaluate(small_runs, "--noise", "2", "--json")
    assert json.loads(again.stdout)["rows"][1]["metrics"] == report["rows"][-1]["metrics"]  # a fixed seed


def test_missing_text_scores_as_a_cache_whose_test_items_lack_their_text(small_runs, tmp_path: Path) -> None:
    """The same items stored with the text absent, as extraction stores a missing transcript."""
    masked = hcm_tiny_cache.build_cache(tmp_path / "sample" / "tiny", n=48, masked={i: ["text"] for i in TEST_IDS})
    result = evaluate(small_runs, "--missing", "text", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][1]
    stored = evaluate_run(small_runs.full, "test", cache_dir=masked, device="cpu", console=Console(quiet=True))
    # The two pad the text rows differently (none stored, zeroed rows masked in memory), so float32
    # sums run in another order: equal up to that noise (about 2e-5 in Corr under the paper
    # reading); a text masked otherwise would move every item's prediction by far more.
    for name, value in stored["metrics"].items():
        assert row["metrics"][name] == pytest.approx(value, abs=1e-4), name


def test_cross_corpus_evaluation_on_another_dataset_with_the_same_streams(small_runs, tmp_path: Path) -> None:
    other = hcm_tiny_cache.build_cache(tmp_path / "mosei" / "tiny", n=48, dataset="mosei", seed=3)
    result = evaluate(small_runs, "--features", str(other), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cache"] == str(other)
    classes = hcm_tiny_cache.build_cache(tmp_path / "meld" / "tiny", n=48, dataset="meld", task="classification")
    refused = evaluate(small_runs, "--features", str(classes))
    assert refused.exit_code != 0 and "cross-corpus evaluation needs the same task" in refused.output


@pytest.mark.parametrize("args,words", [(["--missing", "smell"], "give text, video or audio"),
                                        (["--noise", "a,b"], "not a comma list of numbers"),
                                        (["--noise", "-1"], "noise levels are numbers >= 0"),
                                        (["--missing", "all", "--missing", "text"], "give it alone")])
def test_bad_options_are_refused_before_any_work(small_runs, args: list[str], words: str) -> None:
    result = evaluate(small_runs, *args)
    assert result.exit_code == 2 and words in result.output
