"""`hcm predict` on clips of the synthetic corpus, with a tiny run trained once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.core.workspace import Workspace
from hcm.cli import app
from hcm.apps.predict import NO_TEXT_NOTE, describe
from hcm.apps.train import TrainRequest, train_in_workspace
from hcm.pipeline.extract import extract
from hcm.pipeline.sample import make_sample
from hcm_pickles import RunsCode

runner = CliRunner()
TINY_MODEL = {"epochs": 1, "batch_size": 4, "d_model": 16, "num_heads": 2, "m_ctn": 2, "m_gcn": 1, "m_c": 1,
              "ot_iters": 5}
JSON_KEYS = {"clip", "run", "epoch", "dataset", "task", "label", "score", "label_range", "probabilities",
             "modalities", "notes"}


# Slow as a module: every test but the last uses `trained`, which extracts a corpus and trains a model.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A workspace with a 12-clip sample, its tiny cache, one 1-epoch run, and a clip without audio."""
    root = tmp_path_factory.mktemp("predict")
    workspace = Workspace(root / "hcm-work")
    corpus = workspace.data / "sample-mosei"
    make_sample("mosei", corpus, n=12, seed=0, progress=False)
    extract("sample", workspace=workspace, profile="tiny", workers=0, progress=False)
    (result,) = train_in_workspace(workspace, TrainRequest(overrides=TINY_MODEL, progress=False))
    faulty = make_sample("mosei", root / "faulty", n=8, seed=1, faults=True, progress=False)
    (silent,) = [fault for fault in faulty.faults if fault.kind == "no_audio"]
    return {"workspace": workspace, "run": result.run_dir, "clip": sorted(corpus.glob("Raw/*/*.mp4"))[0],
            "silent": faulty.root / silent.path}


def invoke(trained: dict, *args: str):
    return runner.invoke(app, ["--workdir", str(trained["workspace"].root), "predict", *map(str, args)])


def test_predict_prints_the_sentiment_score(trained: dict) -> None:
    result = invoke(trained, trained["clip"], "--text", "honestly the movie was wonderful")
    assert result.exit_code == 0, result.output
    assert "sentiment score" in result.stdout and trained["run"].name in result.stdout
    assert "text yes, video yes, audio yes" in result.stdout


def test_json_output_schema(trained: dict) -> None:
    result = invoke(trained, trained["clip"], "--text", "the acting was awful", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == JSON_KEYS
    assert document["task"] == "regression" and document["dataset"] == "sample"
    assert isinstance(document["score"], float) and document["probabilities"] is None
    assert document["label"] == ("positive" if document["score"] > 0 else "negative")
    assert document["label_range"] == [-3.0, 3.0] and document["epoch"] == 1
    assert document["run"] == str(trained["run"]) and document["notes"] == []
    assert document["modalities"] == {"text": True, "video": True, "audio": True}


def test_same_clip_same_text_same_score(trained: dict) -> None:
    first = json.loads(invoke(trained, trained["clip"], "--text", "fine", "--json").stdout)
    again = json.loads(invoke(trained, trained["clip"], "--text", "fine", "--json", "--run", trained["run"]).stdout)
    assert first["score"] == again["score"]


def test_no_transcript_masks_the_text_and_says_so(trained: dict) -> None:
    result = invoke(trained, trained["clip"], "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["modalities"] == {"text": False, "video": True, "audio": True}
    assert document["notes"] == [NO_TEXT_NOTE]
    human = invoke(trained, trained["clip"])
    assert "no transcript given" in human.stdout and "speech recognition" in human.stdout


def test_clip_without_audio_is_predicted_with_audio_masked(trained: dict) -> None:
    result = invoke(trained, trained["silent"], "--text", "it was okay", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["modalities"] == {"text": True, "video": True, "audio": False}
    assert any("no audio stream" in note for note in document["notes"])


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (b"not a video", "cannot decode")])
def test_bad_clip_is_a_clear_error(trained: dict, tmp_path: Path, content: bytes | None, message: str) -> None:
    clip = tmp_path / "clip.mp4"
    if content is not None:
        clip.write_bytes(content)
    result = invoke(trained, clip, "--text", "hello")
    assert result.exit_code == 2
    assert message in result.stderr and str(clip) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_no_run_in_the_workspace_is_a_clear_error(trained: dict, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--workdir", str(tmp_path / "empty"), "predict", str(trained["clip"])])
    assert result.exit_code == 1 and "no training runs" in result.stderr


def test_classification_output_ranks_the_classes() -> None:
    import torch

    config = {"task": "classification", "facts": {"class_names": ["sad", "happy", "neutral"], "label_range": None}}
    out = describe(torch.tensor([0.0, 2.0, 1.0]), config)
    assert out["label"] == "happy" and list(out["probabilities"]) == ["happy", "neutral", "sad"]
    assert out["score"] is None and abs(sum(out["probabilities"].values()) - 1) < 1e-5


def test_a_downloaded_run_with_code_in_its_checkpoint_is_refused(trained: dict, tmp_path: Path) -> None:
    import shutil

    import torch

    run, marker = tmp_path / trained["run"].name, tmp_path / "code-ran"
    shutil.copytree(trained["run"], run)
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    torch.save({**state, "note": RunsCode(marker)}, run / "checkpoints" / "best.pt")
    result = invoke(trained, trained["clip"], "--text", "fine", "--run", run)
    assert result.exit_code == 1 and "refused" in result.stderr and "builtins.exec" in result.stderr
    assert not marker.exists()
