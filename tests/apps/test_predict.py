"""`hcm predict` on clips of the synthetic corpus, with a tiny run trained once for the module."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hcm_pickles import RunsCode
from rich.console import Console
from typer.testing import CliRunner

from hcm.apps.predict import NO_TEXT_NOTE, PredictError, describe, gather_inputs
from hcm.apps.train import TrainRequest, train_in_workspace
from hcm.cli import app
from hcm.core.errors import UsageError
from hcm.core.workspace import Workspace
from hcm.pipeline.extract import extract
from hcm.pipeline.sample import make_sample

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


def test_another_precision_than_the_caches_is_noted(trained: dict) -> None:
    """The cache is float32 (tiny profile); bfloat16 features differ from it, and the output says so."""
    result = invoke(trained, trained["clip"], "--text", "fine", "--json", "--precision", "bfloat16")
    assert result.exit_code == 0, result.output
    (note,) = json.loads(result.stdout)["notes"]
    assert "computed in bfloat16" in note and "extracted in float32" in note
    wrong = invoke(trained, trained["clip"], "--precision", "half")
    assert wrong.exit_code == 2 and "float16" in wrong.output


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
    assert result.stderr.count(message) == 1  # the reason is said once
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_no_run_in_the_workspace_is_a_clear_error(trained: dict, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--workdir", str(tmp_path / "empty"), "predict", str(trained["clip"])])
    assert result.exit_code == 1 and "no training runs" in result.stderr


def test_batch_from_clips_folder_and_csv_with_context(trained: dict, tmp_path: Path) -> None:
    clips = sorted(trained["clip"].parent.parent.glob("*/*.mp4"))[:3]
    single = json.loads(invoke(trained, clips[1], "--text", "it was great", "--json").stdout)
    listing = tmp_path / "clips.csv"
    with open(listing, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "text", "context_before", "context_after"])
        writer.writerow([clips[0], "what a dull film", "we went | it started late", ""])
        writer.writerow([clips[1], "it was great", "", ""])
        writer.writerow(["missing.mp4", "gone", "", ""])  # relative: looked up beside the CSV
    result = invoke(trained, listing, clips[2], "--out", tmp_path / "p.csv", "--batch-size", "2", "--quiet")
    assert result.exit_code == 1 and "1 of 4 clips could not be predicted" in result.stderr
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [row["clip"] for row in rows] == [str(clips[0]), str(clips[1]), str(tmp_path / "missing.mp4"), str(clips[2])]
    assert [bool(row["error"]) for row in rows] == [False, False, True, False]
    assert "does not exist" in rows[2]["error"] and rows[3]["masked"] == "text" and rows[0]["masked"] == ""
    assert rows[0]["text"] == "what a dull film" and rows[2]["text"] == "gone" and rows[3]["text"] == ""
    assert list(rows[2]) == list(rows[0])  # a failed clip's row has the same columns
    assert float(rows[1]["score"]) == pytest.approx(single["score"], abs=1e-4)  # batching changes nothing

    folder = invoke(trained, trained["clip"].parent, "--json", "--out", tmp_path / "p.json")
    assert folder.exit_code == 0, folder.output
    printed, saved = json.loads(folder.stdout), json.loads((tmp_path / "p.json").read_text())
    assert printed == saved and len(saved) == len(list(trained["clip"].parent.glob("*.mp4")))
    assert all(row["error"] == "" and isinstance(row["score"], float) for row in saved)


def test_context_of_one_clip_reaches_the_text_encoder(trained: dict) -> None:
    plain = json.loads(invoke(trained, trained["clip"], "--text", "it was fine", "--json").stdout)
    result = invoke(trained, trained["clip"], "--text", "it was fine", "--json",
                    "--context-before", "what a terrible start | nothing worked", "--context-after", "I left early")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"] != pytest.approx(plain["score"], abs=1e-6)


def test_context_cells_and_bad_lists(tmp_path: Path) -> None:
    listing = tmp_path / "clips.csv"
    listing.write_text("path,text,context_before\nsub/a.mp4,hello,one | two\n")
    (given,) = gather_inputs([listing])
    assert given.clip == tmp_path / "sub" / "a.mp4" and given.text == "hello"
    assert given.context_before == ("one", "two") and given.context_after == ()
    listing.write_text("file,words\na.mp4,hi\n")
    with pytest.raises(UsageError, match="must start with path,text"):
        gather_inputs([listing])
    with pytest.raises(UsageError, match="--text and --context-before/--context-after go with one clip"):
        gather_inputs([tmp_path / "a.mp4", tmp_path / "b.mp4"], "hi")
    (given,) = gather_inputs([tmp_path / "a.mp4"], None, ("", "later | much later"))
    assert given.text is None and given.context_after == ("later", "much later")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no clip"):
        gather_inputs([tmp_path / "empty"])


def test_classification_columns_keep_the_class_order() -> None:
    """p_* columns in the dataset's class order whatever the ranking (as evaluate's predictions.csv);
    the transcript in `text`, masked modalities in `masked`, probabilities without a sign."""
    import torch

    from hcm.apps.predict import ClipInput, Prediction, prediction_row, predictions_table, same_columns

    config = {"task": "classification", "facts": {"class_names": ["sad", "happy", "neutral"], "label_range": None}}
    out = describe(torch.tensor([0.0, 2.0, 1.0]), config)
    assert out["label"] == "happy" and list(out["probabilities"]) == ["sad", "happy", "neutral"]
    assert out["score"] is None and abs(sum(out["probabilities"].values()) - 1) < 1e-5
    rows = []
    for name, logits in (("a.mp4", [3.0, 0.0, 1.0]), ("b.mp4", [0.0, 1.0, 3.0])):
        result = Prediction(name, "run", 1, "meld", "classification", modalities={"text": True, "video": False},
                            **describe(torch.tensor(logits), config))
        rows.append(prediction_row(ClipInput(Path(name), "so sad", (), ()), result))
    rows.append(prediction_row(ClipInput(Path("c.mp4"), None, (), ()), PredictError("c.mp4 does not exist")))
    rows = same_columns(rows)
    assert [list(row) for row in rows] == [["clip", "text", "label", "score", "p_sad", "p_happy", "p_neutral",
                                            "masked", "notes", "error"]] * 3
    assert rows[0]["text"] == "so sad" and rows[0]["masked"] == "video" and rows[0]["label"] == "sad"
    shown = io.StringIO()
    Console(file=shown, width=100).print(predictions_table(rows))
    assert f"{rows[1]['p_neutral']:.3f}" in shown.getvalue() and "+0." not in shown.getvalue()


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


def test_predict_gives_evaluates_prediction_for_a_test_item(trained: dict) -> None:
    """The same test clip, transcript and context: `hcm predict` and `hcm evaluate` agree (both
    standardise the streams with the train split's statistics, pad and mask alike)."""
    from hcm.pipeline.datasets import get_dataset
    from hcm.training.evaluate import evaluate_run

    evaluate_run(trained["run"], "test", device="cpu", console=Console(file=io.StringIO()))
    rows = list(csv.DictReader(open(trained["run"] / "eval" / "test" / "predictions.csv", encoding="utf-8")))
    corpus = trained["workspace"].data / "sample-mosei"
    items = {u.id: u for u in get_dataset("mosei").utterances(corpus) if u.split == "test"}
    checked = 0
    for row in rows[:2]:
        item = items[row["id"]]
        assert item.video is not None and item.video.start is None and item.video.end is None  # a whole file
        args = [item.video.path, "--text", item.text, "--json"]
        if item.context_before:
            args += ["--context-before", " | ".join(item.context_before)]
        if item.context_after:
            args += ["--context-after", " | ".join(item.context_after)]
        result = invoke(trained, *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["score"] == pytest.approx(float(row["prediction"]), rel=1e-4, abs=1e-5)
        checked += 1
    assert checked == 2


def test_explain_a_clip_predicts_as_predict_does(trained: dict, tmp_path: Path) -> None:
    """`hcm explain CLIP --text` extracts the clip as predict does: the same score, and the words as labels."""
    text = "honestly the movie was wonderful"
    predicted = json.loads(invoke(trained, trained["clip"], "--text", text, "--json").stdout)
    result = runner.invoke(app, ["--workdir", str(trained["workspace"].root), "explain", str(trained["clip"]),
                                 "--text", text, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / f"{trained['clip'].stem}.json").read_text())
    assert doc["prediction"]["score"] == pytest.approx(predicted["score"], abs=1e-5)
    assert "label" not in doc  # a new clip has none
    assert set(doc["plans"]["video"]["cols"]) <= set(text.split())
    assert (tmp_path / f"{trained['clip'].stem}.png").stat().st_size > 0
