"""``hcm import mmsa`` then ``hcm train``/``evaluate``/``ablate``/``predict`` on the imported cache,
through the CLI, with the real HCMNet at a small size."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from mmsa_files import Spec, reuse_encoders, write_file  # noqa: F401  (fixture)
from mmsa_reference import reference_mosei, reference_sims
from typer.testing import CliRunner

from hcm.cli import app

runner = CliRunner()
SMALL = ["--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1", "--set", "ot_iters=5", "--set", "num_heads=2"]


def _import(source: Path, dataset: str) -> Path:
    result = runner.invoke(app, ["import", "mmsa", str(source), "--dataset", dataset, "--profile", "tiny", "--quiet"])
    assert result.exit_code == 0, result.output
    return Path(result.output.split("cache: ")[1].splitlines()[0])


def _train_and_evaluate(workdir: Path, dataset: str, epochs: int) -> dict:
    result = runner.invoke(app, ["train", "--epochs", str(epochs), "--batch-size", "16", "--lr", "0.003", "--quiet",
                                 *SMALL])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "--split", "test"])
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / dataset).iterdir()
    report = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    with open(run / "eval" / "test" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    report["pred"] = np.array([float(r["prediction"]) for r in rows], np.float32)
    report["truth"] = np.array([float(r["label"]) for r in rows], np.float32)
    report["output"] = result.output
    return report


def _matches(mmsa: dict, reference: dict) -> None:
    """Equal to 4 decimals; predictions.csv keeps 6 significant digits, so a value may sit one
    unit of the 4th decimal apart where the exact value lies on a rounding boundary."""
    assert set(mmsa) == set(reference)
    for name, value in reference.items():
        assert mmsa[name] == pytest.approx(value, abs=1.01e-4), name


def test_mosi_import_train_evaluate_ablate(workdir: Path, tmp_path: Path) -> None:
    source = write_file(tmp_path / "unaligned_50.pkl", Spec("mosi"))
    cache = _import(source, "mosi")
    assert cache == workdir / "features" / "mosi" / "mmsa-tiny"
    assert runner.invoke(app, ["cache", "verify", str(cache)]).exit_code == 0
    info = runner.invoke(app, ["cache", "info", str(cache)])
    assert info.exit_code == 0 and "mmsa_vision" in info.output

    report = _train_and_evaluate(workdir, "mosi", epochs=6)
    metrics, baseline = report["metrics"], report["baseline"]
    assert metrics["mae"] < 0.85 * baseline["mae"] and metrics["corr"] > 0.5  # beats the train mean
    assert metrics["acc2_non0"] > baseline["acc2_non0"]  # and the majority sign
    _matches(report["mmsa"], reference_mosei(report["pred"], report["truth"]))
    assert report["items"] == 12 and "Acc-7" in report["output"]

    result = runner.invoke(app, ["ablate", "--features", str(cache), "--variants", "no-graph", "--modalities", "",
                                 "--epochs", "1", "--quiet", *SMALL])
    assert result.exit_code == 0, result.output


def test_sims_import_train_evaluate(workdir: Path, tmp_path: Path) -> None:
    source = write_file(tmp_path / "unaligned_39.pkl", Spec("sims", aligned=True, tool_format=True))
    _import(source, "sims")
    report = _train_and_evaluate(workdir, "sims", epochs=6)
    metrics, baseline = report["metrics"], report["baseline"]
    assert set(metrics) == {"mult_acc_2", "mult_acc_3", "mult_acc_5", "f1_score", "mae", "corr"}
    assert metrics["mae"] < 0.85 * baseline["mae"] and metrics["corr"] > 0.5
    assert metrics["mult_acc_2"] > baseline["mult_acc_2"]
    _matches(report["mmsa"], reference_sims(report["pred"], report["truth"]))
    assert "Acc-3" in report["output"]


def test_predict_on_an_imported_run_says_it_needs_raw_media(workdir: Path, tmp_path: Path) -> None:
    source = write_file(tmp_path / "aligned_50.pkl", Spec("mosei", aligned=True, sizes=(8, 4, 4)))
    _import(source, "mosei")
    assert runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "8", "--quiet", *SMALL]).exit_code == 0
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not decoded")
    result = runner.invoke(app, ["predict", str(clip), "--text", "great"])
    assert result.exit_code == 1
    assert "imported from aligned_50.pkl" in result.output and "needs a run trained on raw media" in result.output


def test_import_of_a_bad_file_is_a_usage_error(workdir: Path, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    result = runner.invoke(app, ["import", "mmsa", str(source), "--dataset", "mosi", "--profile", "tiny"])
    assert result.exit_code == 2 and "is not a readable pickle" in result.output
    result = runner.invoke(app, ["import", "mmsa", str(source), "--dataset", "iemocap", "--profile", "tiny"])
    assert result.exit_code == 2 and "MMSA files exist for mosi, mosei, sims" in result.output
