"""The paper path end to end through the CLI with full-size stand-in weights (reduced: a few clips).

sample -> extract --profile paper --weights-dir (every encoder at full size; 2 frames and 2 audio
segments per clip instead of 16 and 8, to save time) -> cache verify -> train (shipped MOSEI
config: d_m 256, m_c 8; 1 epoch at batch 2, so a few steps) -> evaluate -> predict.
Cost on the 2-core development machine (benchmarks/RESULTS.md): the weights, written once per
session and shared with tests/benchmarks/test_standin_weights.py, 78 s, and this test 20 s at
load average 4-5; about 4 and 2 minutes when the machine was oversubscribed (load 10-13).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cache.reader import FeatureCache
from hcm.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the stand-in weights are written in its setup

runner = CliRunner()
PAPER_DIMS = {"roberta": (1024,), "efficientnet": (1280,), "clip_image": (1024,), "clip_text": (1024,),
              "esresnext": (1024,)}  # the paper encoders' output widths


def _invoke(*args: str) -> str:
    """Standard output of ``hcm ARGS`` (stderr carries the libraries' loading reports)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"hcm {' '.join(args)} failed:\n{result.output}"
    return result.stdout


def test_paper_profile_extract_train_evaluate_predict(workdir: Path, standin_weights: Path) -> None:
    corpus, cache = workdir / "data" / "sample-mosei", workdir / "features" / "mosei" / "paper"
    _invoke("sample", "-d", "mosei", "--out", str(corpus), "--n", "6", "--quiet")
    _invoke("extract", "-d", "mosei", "--data-root", str(corpus), "--profile", "paper", "--frames", "2",
            "--segments", "2", "--weights-dir", str(standin_weights), "--workers", "0", "--quiet")
    features = FeatureCache(cache)
    assert features.meta.profile == "paper" and len(features) == 6
    assert {name: features.specs[name].shape for name in PAPER_DIMS} == PAPER_DIMS
    features.close()
    _invoke("cache", "verify", str(cache))

    _invoke("train", "--features", str(cache), "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--quiet")
    (run,) = (workdir / "runs" / "mosei").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["profile"] == "paper" and config["model"]["d_model"] == 256 and config["model"]["m_c"] == 8

    _invoke("evaluate", "--split", "test", "--device", "cpu")
    report = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert report["items"] == 2 and math.isfinite(report["metrics"]["mae"])

    clip = next(corpus.rglob("*.mp4"))
    output = _invoke("predict", str(clip), "--text", "i really liked it", "--json", "--device", "cpu",
                     "--weights-dir", str(standin_weights))
    prediction = json.loads(output)
    assert prediction["task"] == "regression" and math.isfinite(prediction["score"])
    assert prediction["modalities"] == {"text": True, "video": True, "audio": True}
