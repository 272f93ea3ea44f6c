"""``hcm sample`` + ``hcm extract`` + ``hcm train`` + ``hcm evaluate`` for CMU-MOSI, CH-SIMS,
CH-SIMS v2 and a corpus of one's own (classification, and regression), through the CLI, and the
bad inputs of ``--dataset custom``. One small extraction per corpus, shared by the tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cache import FeatureCache
from hcm.cli import app

runner = CliRunner()
TINY = ["--profile", "tiny", "--frames", "2", "--segments", "2", "--workers", "0", "--quiet"]
CORPORA = {  # case -> (sample written, dataset extracted, extra extract flags)
    "mosi": ("mosi", "mosi", []),
    "sims": ("sims", "sims", ["--spacy-model", "chain"]),
    "simsv2": ("simsv2", "simsv2", []),
    "custom-classes": ("custom", "custom", ["--classes", "sad,neutral,happy,angry"]),
    "custom-scores": ("mosi", "custom", ["--label-range=-3,3"]),
}


@pytest.fixture(scope="module", params=sorted(CORPORA))
def extracted(request, tmp_path_factory) -> tuple[str, Path, str]:
    """``(case, workspace, output of extract)``: a 9-clip sample extracted with the tiny profile."""
    sample, dataset, flags = CORPORA[request.param]
    work = tmp_path_factory.mktemp(request.param) / "work"
    written = runner.invoke(app, ["--workdir", str(work), "sample", "--dataset", sample, "--n", "9", "--seed", "1",
                                  "--faults", "--quiet"])
    assert written.exit_code == 0, written.output
    root = work / "data" / f"sample-{sample}"
    result = runner.invoke(app, ["--workdir", str(work), "extract", "--dataset", dataset, "--data-root", str(root),
                                 *TINY, *flags])
    assert result.exit_code == 0, result.output
    return request.param, work, result.output


@pytest.mark.slow
def test_sample_extract_train_evaluate(extracted) -> None:
    case, work, output = extracted
    _, dataset, _ = CORPORA[case]
    cache_dir = work / "features" / dataset / "tiny"
    with FeatureCache(cache_dir) as cache:
        meta, items = cache.meta, list(cache)
    assert "9 extracted" in output and "masked" in output  # the faults mask modalities, nothing dropped
    assert {item.split for item in items} == {"train", "valid", "test"}
    if case == "custom-classes":
        assert meta.task == "classification" and meta.classes == ["sad", "neutral", "happy", "angry"]
        assert meta.recipe["split"]["method"] == "by video, seeded" and "seed 0" in output
        assert {item.group for item in items if item.split == "test"}.isdisjoint(
            {item.group for item in items if item.split == "train"})
    elif case == "custom-scores":
        assert meta.task == "regression" and meta.recipe["facts"]["label_range"] == [-3.0, 3.0]
    else:
        assert "published" in output  # 9 clips are not the published split sizes
    if dataset.startswith("sims"):
        assert meta.recipe["profile"]["parser"]["model"] == "chain"  # no Chinese spaCy pipeline in CI

    trained = runner.invoke(app, ["--workdir", str(work), "train", "--features", str(cache_dir), "--epochs", "1",
                                  "--quiet"])
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(app, ["--workdir", str(work), "evaluate", "--split", "test"])
    assert evaluated.exit_code == 0, evaluated.output
    (run,) = (work / "runs" / dataset).iterdir()
    report = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    expected = {"mosi": "acc2_non0", "sims": "mult_acc_3", "simsv2": "mult_acc_3", "custom-classes": "f1_angry",
                "custom-scores": "acc7"}[case]
    assert expected in report["metrics"] and report["items"] == sum(item.split == "test" for item in items)
    listed = runner.invoke(app, ["--workdir", str(work), "runs", "--dataset", dataset])
    assert listed.exit_code == 0 and f"runs of {dataset}" in listed.output and "1 run(s) updated" in listed.output


@pytest.mark.parametrize("flags, message", [
    (["--label-range", "3,1"], "needs LOW < HIGH"),
    (["--classes", "happy"], "two or more distinct"),
    (["--label-range", "0,1", "--classes", "a,b"], "not both"),
])
def test_bad_custom_flags_are_usage_errors(flags, message, tmp_path) -> None:
    root = tmp_path / "mine"
    (root / "Raw").mkdir(parents=True)
    (root / "label.csv").write_text("video_id,clip_id,text,label\nv,1,hi,1\n")
    result = runner.invoke(app, ["--workdir", str(tmp_path / "w"), "extract", "--dataset", "custom", "--data-root",
                                 str(root), *TINY, *flags])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_custom_folder_without_label_csv_shows_the_layout(tmp_path) -> None:
    (tmp_path / "mine" / "clips").mkdir(parents=True)
    result = runner.invoke(app, ["--workdir", str(tmp_path / "w"), "extract", "--dataset", "custom", "--data-root",
                                 str(tmp_path / "mine"), *TINY])
    assert result.exit_code == 2 and "Raw/<video_id>/<clip_id>.mp4" in result.output
    assert "Missing: label.csv, Raw/" in result.output and "Found: clips/" in result.output


def test_a_broken_label_csv_names_file_and_line(tmp_path) -> None:
    root = tmp_path / "mine"
    (root / "Raw").mkdir(parents=True)
    (root / "label.csv").write_bytes(b'video_id,clip_id,text,label\nv,1,"unclosed,1\n')
    result = runner.invoke(app, ["--workdir", str(tmp_path / "w"), "extract", "--dataset", "custom", "--data-root",
                                 str(root), *TINY])
    assert result.exit_code == 2 and "label.csv" in result.output and "Traceback" not in result.output


def test_mosi_flags_of_custom_are_refused(tmp_path) -> None:
    root = tmp_path / "mosi"
    (root / "Raw").mkdir(parents=True)
    shutil.copyfile(Path(__file__), root / "label.csv")  # never read: the flag is refused first
    result = runner.invoke(app, ["--workdir", str(tmp_path / "w"), "extract", "--dataset", "mosi", "--data-root",
                                 str(root), *TINY, "--classes", "a,b"])
    assert result.exit_code == 2 and "--classes: only --dataset custom" in result.output
