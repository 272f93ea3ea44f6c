"""``hcm sample`` end to end through the CLI."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()


def _flat(output: str) -> str:
    """CLI output without the error box's borders and line breaks."""
    return " ".join(output.replace("│", " ").split())


def test_sample_writes_into_the_workspace_and_prints_a_summary(workdir):
    result = runner.invoke(app, ["sample", "--dataset", "mosei", "--n", "8", "--faults", "-q"])
    assert result.exit_code == 0, result.output
    root = workdir / "data" / "sample-mosei"
    assert str(root) in result.output and "4 faults" in result.output
    assert "missing_clip" in result.output and "train" in result.output
    with (root / "label.csv").open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 8
    marker = json.loads((root / ".hcm-sample.json").read_text())
    assert marker["dataset"] == "mosei" and len(marker["faults"]) == 4


def test_sample_all_writes_every_corpus_under_out(tmp_path):
    out = tmp_path / "corpora"
    result = runner.invoke(app, ["--workdir", str(tmp_path / "ws"), "sample", "-d", "all",
                                 "--n", "10", "--out", str(out), "--seed", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "sample-mosei" / "label.csv").is_file()
    assert (out / "sample-meld" / "dev_sent_emo.csv").is_file()
    assert len(list((out / "sample-iemocap").glob("Session*/dialog/avi/DivX/*.avi"))) == 5


def test_sample_reports_bad_input_without_a_traceback(tmp_path):
    result = runner.invoke(app, ["--workdir", str(tmp_path), "sample", "-d", "cmu-mosi"])
    assert result.exit_code == 2 and "choose from" in _flat(result.output)
    result = runner.invoke(app, ["--workdir", str(tmp_path), "sample", "-d", "meld", "--n", "2"])
    assert result.exit_code == 2 and "at least 3" in _flat(result.output)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["sample", "-d", "meld", "--out", str(taken)])
    assert result.exit_code == 2 and "not empty" in _flat(result.output)
    assert (taken / "notes.txt").read_text() == "mine"


def test_sample_help_names_the_datasets_and_faults():
    result = runner.invoke(app, ["sample", "--help"])
    assert result.exit_code == 0
    assert "iemocap" in result.output and "--faults" in result.output
