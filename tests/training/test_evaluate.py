"""What `hcm evaluate` promises, on tiny caches and three short TinyNet runs trained once for the
module: the report and its numbers (recomputed from predictions.csv and the cache's labels), the
printed table, the files, the caches a run may be applied to, and the seed summary.

The runs are trained in module fixtures (training calls nothing of evaluate.py); each evaluation
runs inside the test that checks it, so that mutation testing, which credits a function's calls to
the test that made them, runs every check that can tell a mutant of it apart."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  (the optimiser's first step imports it: here, once, at collection)
from hcm_tiny_cache import CLASSES, specs
from rich.console import Console
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from hcm.cache import FeatureCache
from hcm.cache.schema import CacheMeta, FeatureSpec
from hcm.core.errors import UsageError
from hcm.model.config import ModelConfig
from hcm.training import metrics as M
from hcm.training.checkpoints import CheckpointReadError, load_checkpoint
from hcm.training.data import CacheInfo, read_cache_meta
from hcm.training.evaluate import (
    OutputWriteError,
    ProfileMismatchError,
    check_cache_matches,
    evaluate_run,
    load_run_model,
    masked_counts,
    masked_note,
    metric_columns,
    metrics_table,
    open_run,
    plot_tsne,
    score_classes,
    summarize_seed_runs,
    write_predictions,
)
from hcm.training.inference import Predictions
from hcm.training.model_source import UntrustedModelError
from hcm.training.runs import RunPaths
from hcm.training.settings import TrainConfig
from hcm.training.trainer import train

PNG = b"\x89PNG\r\n\x1a\n"
LOGGER = "hcm.training.evaluate"
# test items 40..47 of the 48: clip044 without video, clip045 without video and audio; clip003 (train) without text
MASKED = {"clip044": ["video"], "clip045": ["video", "audio"], "clip003": ["text"]}


# --------------------------------------------------------------------------- shared caches and runs

@pytest.fixture(scope="module")
def cache(tiny_cache) -> Path:
    return tiny_cache(masked=MASKED)


@pytest.fixture(scope="module")
def class_cache(tiny_cache) -> Path:
    return tiny_cache(task="classification", profile="tiny-classes")


def _train(cache: Path, run_dir: Path, facts, factory: str, **kw) -> Path:
    cfg = TrainConfig(**{**dict(epochs=1, batch_size=8, lr=0.02, seed=3, warmup_epochs=0.5, num_workers=0), **kw})
    with pytest.MonkeyPatch.context() as patch:  # curves.png: not what these tests read, and slow to draw
        patch.setattr("hcm.training.runs.plot_curves", lambda *args, **kwargs: None)
        return train(cache, run_dir, cfg, ModelConfig(), facts=facts, model_factory=factory, progress=False).run_dir


@pytest.fixture(scope="module")
def run(cache: Path, tiny_facts, tiny_net, tmp_path_factory) -> Path:
    """A regression run of two epochs."""
    return _train(cache, tmp_path_factory.mktemp("runs") / "regression", tiny_facts(), tiny_net.factory, epochs=2)


@pytest.fixture(scope="module")
def sims_run(cache: Path, tiny_facts, tiny_net, tmp_path_factory) -> Path:
    """A regression run scored with MMSA's CH-SIMS metric set (labels in [-1, 1] after clipping)."""
    facts = dataclasses.replace(tiny_facts(), metrics="sims", label_range=(-1.0, 1.0))
    return _train(cache, tmp_path_factory.mktemp("runs") / "sims", facts, tiny_net.factory)


@pytest.fixture(scope="module")
def class_runs(class_cache: Path, tiny_facts, tiny_net, tmp_path_factory) -> tuple[Path, Path]:
    """Two classification runs of one epoch, seeds 3 and 4."""
    root = tmp_path_factory.mktemp("runs")
    return tuple(_train(class_cache, root / f"seed{seed}", tiny_facts("classification"), tiny_net.factory, seed=seed)
                 for seed in (3, 4))


@pytest.fixture
def one_openmp_thread() -> None:
    """sklearn's t-SNE on one OpenMP thread: on a busy machine its threads' waits take seconds."""
    with threadpool_limits(1, user_api="openmp"):
        yield


def _evaluate(run: Path, split: str = "test", **kw) -> tuple[dict, str]:
    buffer = io.StringIO()
    report = evaluate_run(run, split, device="cpu", console=Console(file=buffer, width=250), **kw)
    return report, buffer.getvalue()


def _rows(printed: str) -> list[list[str]]:
    """The cells of each header and body row of a printed rich table."""
    rows = []
    for line in printed.splitlines():
        for sep in ("┃", "│"):
            if line.startswith(sep):
                rows.append([cell.strip() for cell in line.strip(sep).split(sep)])
    return rows


def _predictions(run: Path, split: str = "test") -> list[dict[str, str]]:
    with open(run / "eval" / split / "predictions.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _labels(cache: Path, split: str) -> tuple[list[str], np.ndarray]:
    with FeatureCache(cache, split=split, features=[]) as reader:
        return list(reader.ids), np.asarray(reader.labels, dtype=np.float64)


def _class_metrics(run: Path, split: str = "test") -> dict[str, float]:
    """Accuracy and F1 of the classes in a run's predictions.csv of ``split``."""
    rows = _predictions(run, split)
    label, pred = [row["label"] for row in rows], [row["prediction"] for row in rows]
    out = {"accuracy": float(np.mean([a == b for a, b in zip(label, pred)])),
           "weighted_f1": float(f1_score(label, pred, average="weighted", zero_division=0))}
    for name, value in zip(CLASSES, f1_score(label, pred, labels=CLASSES, average=None, zero_division=0)):
        out[f"f1_{name}"] = float(value)
    return out


# --------------------------------------------------------------------------- evaluate_run: regression

def test_regression_evaluation(run: Path, cache: Path, drawn: list) -> None:
    buffer = io.StringIO()
    report = evaluate_run(run, console=Console(file=buffer, width=250))  # by default the test split, device auto
    printed = buffer.getvalue()
    scatter, confusion = drawn  # each plot names the run and split
    assert scatter.axes[0].get_title() == (f"{run.name} test: predicted against true score, "
                                           f"MAE {report['metrics']['mae']:.3f}")
    assert confusion.axes[0].get_title() == (f"{run.name} test: Acc-7 {100 * report['metrics']['acc7']:.1f}%\n"
                                             f"confusion matrix, counts")
    assert [t.get_text() for t in confusion.axes[0].get_xticklabels()] == ["-3", "-2", "-1", "0", "1", "2", "3"]
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert (report["run"], report["split"], report["cache"]) == (str(run), "test", str(cache))
    assert (report["checkpoint"], report["epoch"], report["items"]) == ("best", best["epoch"], 8)
    assert (report["task"], report["key_metric"]) == ("regression", "mae")
    assert report["masked"] == {"items": 2, "per_modality": {"text": 0, "video": 2, "audio": 1}}
    _check_regression_metrics(report, run, cache)
    _check_regression_baseline(report, cache)
    # TinyNet's loss: the L1 error plus 1e-3 times the mean squared tanh feature (at most 1e-3)
    assert report["metrics"]["mae"] - 1e-6 <= report["loss"] <= report["metrics"]["mae"] + 1e-3 + 1e-6
    names = {"Has0_acc_2": "acc2_has0", "Has0_F1_score": "f1_has0", "Non0_acc_2": "acc2_non0",
             "Non0_F1_score": "f1_non0", "Mult_acc_5": "acc5", "Mult_acc_7": "acc7", "MAE": "mae", "Corr": "corr"}
    mmsa = {key: round(report["metrics"][ours], 4) for key, ours in names.items()}
    assert report["mmsa"] == mmsa and {key: report[key] for key in names} == mmsa  # also at the top level
    _check_regression_printout(report, printed, run)


def _check_regression_metrics(report: dict, run: Path, cache: Path) -> None:
    rows = _predictions(run)
    ids, truth = _labels(cache, "test")
    assert [row["id"] for row in rows] == ids
    label = np.array([float(row["label"]) for row in rows])
    pred = np.array([float(row["prediction"]) for row in rows])
    np.testing.assert_allclose(label, truth, rtol=1e-5)
    metrics = report["metrics"]
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(pred - label)), abs=1e-5)
    assert metrics["corr"] == pytest.approx(np.corrcoef(pred, label)[0, 1], abs=1e-4)
    assert metrics["acc7"] == np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(label, -3, 3)))
    non0 = label != 0
    assert metrics["acc2_non0"] == np.mean((pred[non0] > 0) == (label[non0] > 0))
    assert metrics["acc2_has0"] == np.mean((pred >= 0) == (label >= 0))
    recomputed = M.compute_metrics("regression", pred, label)
    assert metrics.keys() == recomputed.keys()
    for name, value in recomputed.items():
        assert metrics[name] == pytest.approx(value, abs=1e-4), name


def _check_regression_baseline(report: dict, cache: Path) -> None:
    _, truth = _labels(cache, "test")
    _, train_labels = _labels(cache, "train")
    baseline = report["baseline"]
    assert baseline["mae"] == pytest.approx(np.mean(np.abs(truth - train_labels.mean())), rel=1e-6)
    assert math.isnan(baseline["corr"])  # a constant has no correlation
    values, counts = np.unique(np.round(np.clip(train_labels, -3, 3)), return_counts=True)
    assert baseline["acc7"] == np.mean(np.round(np.clip(truth, -3, 3)) == values[np.argmax(counts)])


def _check_regression_printout(report: dict, printed: str, run: Path) -> None:
    lines = [line.strip() for line in printed.splitlines()]
    assert lines[0] == f"sample test ({run.name}, epoch {report['epoch']})"
    header, *body = _rows(printed)
    assert header == ["Method", "MAE↓", "Corr↑", "Acc-7↑", "Acc-5↑", "Acc-2 has0↑", "F1 has0↑", "Acc-2 non0↑",
                      "F1 non0↑"]
    keys = ["mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"]

    def cells(values: dict) -> list[str]:
        return [f"{values[k]:.3f}" if k in ("mae", "corr") else f"{100 * values[k]:.2f}" for k in keys]

    assert body[0] == ["HCMNet", *cells(report["metrics"])]
    assert body[1][0] == "baseline" and body[1][2] == "-"
    assert [body[1][1], *body[1][3:]] == [c for k, c in zip(keys, cells(report["baseline"])) if k != "corr"]
    assert ("MAE and Corr as decimals; accuracies and F1 in %; baseline: train mean for MAE/Corr, train majority "
            "class for Acc and F1") in lines
    assert ("2 of 8 test items had a masked modality (video 2, audio 1); they are scored with what they have, and "
            "the metrics cover all 8 items.") in lines
    out = run / "eval" / "test"
    files = [out / "predictions.csv", out / "scatter.png", out / "confusion_acc7.png", out / "metrics.json"]
    assert report["files"] == [str(path) for path in files]
    assert lines[lines.index("wrote:") + 1:] == [str(path) for path in files]
    assert all((out / name).read_bytes()[:8] == PNG for name in ("scatter.png", "confusion_acc7.png"))
    written = json.loads((out / "metrics.json").read_text())
    assert written["files"] == report["files"] and written["metrics"] == pytest.approx(report["metrics"])
    assert written["baseline"]["corr"] is None and written["MAE"] == report["MAE"]


# --------------------------------------------------------------------------- evaluate_run: classification

def test_classification_evaluation_with_tsne(class_runs: tuple[Path, Path], class_cache: Path,
                                            one_openmp_thread: None, drawn: list) -> None:
    run = class_runs[0]
    report, printed = _evaluate(run, tsne=True)
    confusion, tsne = drawn
    assert confusion.axes[0].get_title() == (f"{run.name} test: accuracy {100 * report['metrics']['accuracy']:.1f}%\n"
                                             f"confusion matrix, counts")
    assert [t.get_text().split("\n")[1] for t in confusion.axes[0].get_yticklabels()] == [
        f"F1 {report['metrics'][f'f1_{name}']:.2f}" for name in CLASSES]
    assert tsne.axes[0].get_title() == f"{run.name} test: t-SNE of the latent features, coloured by label"
    assert sum(len(c.get_offsets()) for c in tsne.axes[0].collections) == 8
    rows = _predictions(run)
    ids, truth = _labels(class_cache, "test")
    assert [row["id"] for row in rows] == ids
    assert list(rows[0]) == ["id", "label", "prediction", "p_negative", "p_neutral", "p_positive"]
    assert [CLASSES.index(row["label"]) for row in rows] == truth.astype(int).tolist()
    probs = np.array([[float(row[f"p_{name}"]) for name in CLASSES] for row in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=2e-6)
    assert [row["prediction"] for row in rows] == [CLASSES[k] for k in probs.argmax(1)]
    assert report["metrics"] == pytest.approx(_class_metrics(run))
    cross_entropy = -np.mean(np.log(probs[np.arange(len(rows)), truth.astype(int)]))
    assert cross_entropy - 1e-4 <= report["loss"] <= cross_entropy + 1e-3 + 1e-4  # + TinyNet's small penalty
    _, train_labels = _labels(class_cache, "train")
    majority = np.bincount(train_labels.astype(int)).argmax()
    assert report["baseline"]["accuracy"] == np.mean(truth == majority)
    assert (report["task"], report["key_metric"], report["epoch"]) == ("classification", "weighted_f1", 1)
    assert report["mmsa"] == {} and "MAE" not in report and "Mult_acc_7" not in report

    header, hcmnet, baseline = _rows(printed)
    assert header == ["Method", "Negative", "Neutral", "Positive", "Acc↑", "w-F1↑"]
    keys = ["f1_negative", "f1_neutral", "f1_positive", "accuracy", "weighted_f1"]
    assert hcmnet == ["HCMNet", *[f"{100 * report['metrics'][k]:.2f}" for k in keys]]
    assert baseline == ["baseline", *[f"{100 * report['baseline'][k]:.2f}" for k in keys]]
    lines = [line.strip() for line in printed.splitlines()]
    assert lines[0] == f"sample test ({run.name}, epoch 1)"
    assert "MAE and Corr as decimals; accuracies and F1 in %; baseline: the train split's majority class" in lines
    assert "No test item had a masked modality; the metrics cover all 8 items." in lines
    assert report["masked"] == {"items": 0, "per_modality": {"text": 0, "video": 0, "audio": 0}}
    out = run / "eval" / "test"
    names = ["predictions.csv", "confusion.png", "tsne.png", "metrics.json"]
    assert report["files"] == [str(out / name) for name in names]
    assert all((out / name).read_bytes()[:8] == PNG for name in ("confusion.png", "tsne.png"))


def test_a_folder_that_cannot_be_written_is_reported_after_the_table(class_runs, tmp_path: Path) -> None:
    run = tmp_path / class_runs[0].name
    shutil.copytree(class_runs[0], run, ignore=shutil.ignore_patterns("eval"))
    (run / "eval").write_text("a file where the eval folder goes")  # root writes anywhere: a file stops it
    buffer = io.StringIO()
    with pytest.raises(OutputWriteError) as raised:
        evaluate_run(run, "test", device="cpu", console=Console(file=buffer, width=250))
    out = run / "eval" / "test"
    failed = "; ".join(f"{out / name} (Not a directory)" for name in ("predictions.csv", "confusion.png",
                                                                          "metrics.json"))
    assert str(raised.value) == (
        f"the test metrics above were computed, but 3 file(s) could not be written: {failed}. Make {out} writable "
        f"(or copy the run folder somewhere writable) and evaluate again to keep them")
    printed = buffer.getvalue()
    assert printed.lstrip().startswith(f"sample test ({run.name}, epoch 1)") and "HCMNet" in printed
    assert "wrote:" not in printed


def test_sims_evaluation_uses_mmsas_ch_sims_set(sims_run: Path, cache: Path) -> None:
    report, printed = _evaluate(sims_run)
    rows = _predictions(sims_run)
    label = np.clip([float(row["label"]) for row in rows], -1, 1)
    pred = np.clip([float(row["prediction"]) for row in rows], -1, 1)
    metrics = report["metrics"]
    assert set(metrics) == {"mult_acc_2", "mult_acc_3", "mult_acc_5", "f1_score", "mae", "corr"}
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(pred - label)), abs=1e-5)
    assert metrics["mult_acc_2"] == np.mean((pred > 0) == (label > 0))  # (-1.01, 0], (0, 1.01]
    for name, value in M.sims_metrics(pred, label).items():
        assert metrics[name] == pytest.approx(value, abs=1e-4), name
    _, train_labels = _labels(cache, "train")
    _, truth = _labels(cache, "test")
    assert report["baseline"]["mae"] == pytest.approx(
        np.mean(np.abs(np.clip(truth, -1, 1) - np.clip(train_labels, -1, 1).mean())), abs=1e-6)
    names = {"Mult_acc_2": "mult_acc_2", "Mult_acc_3": "mult_acc_3", "Mult_acc_5": "mult_acc_5",
             "F1_score": "f1_score", "MAE": "mae", "Corr": "corr"}
    assert report["mmsa"] == {key: round(metrics[ours], 4) for key, ours in names.items()}
    assert report["F1_score"] == report["mmsa"]["F1_score"]
    assert _rows(printed)[0] == ["Method", "MAE↓", "Corr↑", "Acc-2↑", "Acc-3↑", "Acc-5↑", "F1↑"]
    out = sims_run / "eval" / "test"
    assert report["files"] == [str(out / name) for name in ("predictions.csv", "scatter.png", "confusion_acc5.png",
                                                            "metrics.json")]


def test_evaluation_takes_the_checkpoint_device_and_batch_size_asked_for(class_runs, tiny_net,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run = class_runs[1]
    with pytest.raises(CheckpointReadError, match=r"checkpoints/nothing\.pt does not exist"):
        _evaluate(run, checkpoint="nothing")
    with pytest.raises(UsageError, match="'bogus' is not a device name"):
        evaluate_run(run, "test", device="bogus", console=Console(file=io.StringIO()))
    sizes: list[int] = []
    forward = tiny_net.cls.forward
    monkeypatch.setattr(tiny_net.cls, "forward", lambda self, batch: sizes.append(len(batch["label"])) or forward(
        self, batch))
    _evaluate(run)
    assert sizes == [8]  # the run's batch size
    sizes.clear()
    report, _ = _evaluate(run, checkpoint="last", batch_size=3)
    assert sizes == [3, 3, 2] and (report["checkpoint"], report["epoch"]) == ("last", 1)


def test_outside_model_code_is_evaluated_only_when_trusted(class_runs, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "outside_tiny.py").write_text("from hcm_tiny_model import TinyNet as Outside\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = shutil.copytree(class_runs[0], tmp_path / "run", ignore=shutil.ignore_patterns("eval"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model_factory": "outside_tiny:Outside"}))
    with pytest.raises(UntrustedModelError, match="outside_tiny:Outside"):
        _evaluate(run)
    with pytest.raises(UntrustedModelError) as refused:
        open_run(run, "test", device="cpu")
    assert str(refused.value).startswith(f"{run / 'config.json'} names the model factory 'outside_tiny:Outside'")
    paths, outside = RunPaths(run), json.loads((run / "config.json").read_text())
    with pytest.raises(UntrustedModelError) as refused:
        load_run_model(paths, outside, "best", torch.device("cpu"))
    assert str(refused.value).startswith(f"{paths.config} names the model factory 'outside_tiny:Outside'")
    model, _ = load_run_model(paths, outside, "best", torch.device("cpu"), trust_code=True)
    assert type(model).__name__ == "TinyNet"
    with pytest.raises(UsageError) as invalid:
        load_run_model(paths, {k: v for k, v in outside.items() if k != "model"}, "best", torch.device("cpu"))
    assert str(invalid.value).startswith(f"{paths.config} is not a valid run config: model is missing")
    buffer = io.StringIO()  # a narrow colour terminal: the paths written still come one a line, unstyled
    console = Console(file=buffer, width=40, force_terminal=True, color_system="standard")
    report = evaluate_run(run, "test", device="cpu", console=console, trust_model_code=True)
    assert report["items"] == 8 and report["metrics"] == pytest.approx(_class_metrics(run))
    lines = buffer.getvalue().splitlines()
    assert lines[lines.index("wrote:") + 1:] == [f"  {path}" for path in report["files"]]


def test_write_outputs_without_a_report_and_a_tsne_of_nothing(tiny_facts, tmp_path: Path, drawn: list) -> None:
    """Called on its own (as `hcm report` does): plot titles name the folder; a t-SNE without features is
    left out of the files, and nothing failed."""
    from hcm.training.evaluate import write_outputs

    out = tmp_path / "eval" / "valid"
    report: dict = {}
    labels = np.array([0, 1, 2, 1])
    preds = Predictions(np.arange(4), np.eye(3)[[0, 1, 1, 2]].astype(np.float32), 0.0)
    assert write_outputs(out, report, ["a", "b", "c", "d"], preds, labels, tiny_facts("classification"), True) == []
    assert report["files"] == [str(out / "predictions.csv"), str(out / "confusion.png"), str(out / "metrics.json")]
    assert json.loads((out / "metrics.json").read_text()) == {"files": report["files"]}
    named = {"run": "/runs/run-a", "split": "test"}  # a report names the run and split of the titles
    assert write_outputs(tmp_path / "other", named, ["a", "b", "c", "d"], preds, labels, tiny_facts("classification"),
                         False) == []
    confusion, titled = drawn
    assert confusion.axes[0].get_title().startswith("valid valid: accuracy 50.0%")
    assert titled.axes[0].get_title().startswith("run-a test: accuracy 50.0%")


# --------------------------------------------------------------------------- loading a run

def test_load_run_model_loads_the_named_checkpoint(run: Path) -> None:
    paths = RunPaths(run)
    config = json.loads(paths.config.read_text())
    for name in ("last", "best"):
        saved = load_checkpoint(paths.checkpoints / f"{name}.pt")
        model, epoch = load_run_model(paths, config, name, torch.device("cpu"))
        assert epoch == saved["epoch"] and not model.training
        state = model.state_dict()
        assert state.keys() == saved["model"].keys()
        assert all(torch.equal(state[k], saved["model"][k]) for k in state)
    assert load_checkpoint(paths.last)["epoch"] == 2


def test_load_run_model_with_a_resolved_factory_does_not_resolve_the_config_again(class_runs, tiny_net) -> None:
    paths = RunPaths(class_runs[1])
    config = {**json.loads(paths.config.read_text()), "model_factory": "nowhere:Nothing"}
    model, epoch = load_run_model(paths, config, "last", torch.device("cpu"), factory=tiny_net.cls)
    assert isinstance(model, tiny_net.cls) and epoch == 1


def test_open_run_takes_the_runs_loader_settings_unless_given(run: Path, cache: Path, tiny_cache,
                                                              tmp_path: Path) -> None:
    run = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("eval"))
    config = json.loads((run / "config.json").read_text())
    config["train"].update(batch_size=5, num_workers=3)
    (run / "config.json").write_text(json.dumps(config))
    opened = open_run(run, "valid", device="cpu")
    assert (opened.loader_cfg.batch_size, opened.loader_cfg.num_workers) == (5, 3)
    assert opened.epoch == load_checkpoint(run / "checkpoints" / "best.pt")["epoch"]
    assert opened.cache.directory == cache and len(opened.data) == 8 and opened.facts.task == "regression"
    assert opened.dist.device == torch.device("cpu") and not opened.model.training
    assert opened.paths.root == run and opened.config["train"]["batch_size"] == 5
    other = tiny_cache(seed=1, profile="tiny")  # same dataset and profile, another recipe
    given = open_run(run, "test", cache_dir=other, checkpoint="last", device="cpu", batch_size=2, num_workers=0)
    assert (given.loader_cfg.batch_size, given.loader_cfg.num_workers) == (2, 0)
    assert given.cache.directory == other and given.epoch == 2 and len(given.data) == 8
    assert open_run(run, "test").dist.device.type == ("cuda" if torch.cuda.is_available() else "cpu")  # auto


def test_open_run_refusals_name_the_files(run: Path, tiny_cache, tmp_path: Path) -> None:
    paper = tiny_cache(tmp_path / "paper", n=12, profile="paper")
    with pytest.raises(ProfileMismatchError, match=rf"but cache {re.escape(str(paper))} is profile 'paper'"):
        open_run(run, "test", cache_dir=paper, device="cpu")
    with pytest.raises(FileNotFoundError) as missing:
        open_run(tmp_path, "test", device="cpu")
    assert str(missing.value) == f"run config {tmp_path / 'config.json'} does not exist"
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "sample"}))
    with pytest.raises(UsageError) as invalid:
        open_run(tmp_path, "test", device="cpu")
    assert str(invalid.value).startswith(f"{tmp_path / 'config.json'} is not a valid run config: ")


# --------------------------------------------------------------------------- caches a run may be applied to

def _meta(dataset: str = "sample", profile: str = "tiny", task: str = "regression", recipe: dict | None = None,
          dims: dict[str, int | None] | None = None) -> CacheMeta:
    """The metadata of a tiny cache (``recipe`` and stream widths changed where given; width None: no stream)."""
    features = [spec if (spec.name not in (dims or {})) else FeatureSpec(spec.name, (dims[spec.name],), spec.dtype,
                                                                        encoder=spec.encoder)
                for spec in specs() if (dims or {}).get(spec.name, 0) is not None]
    features += [FeatureSpec(name, (dim,), "float16") for name, dim in (dims or {}).items()
                 if dim is not None and name not in {spec.name for spec in specs()}]
    return CacheMeta(dataset=dataset, profile=profile, task=task, classes=CLASSES if task == "classification" else None,
                     recipe={"synthetic": 0} if recipe is None else recipe, features=features, shard_size=16)


def _info(meta: CacheMeta, where: Path) -> CacheInfo:
    """A cache's manifest as ``check_cache_matches`` receives it (the folder need not exist)."""
    return CacheInfo(where, meta.to_dict())


def _config(run_cache: Path, streams: dict, recipe_hash: str | None = None) -> dict:
    meta = read_cache_meta(run_cache)[0] if run_cache.exists() else None
    return {"dataset": "sample", "profile": "tiny", "task": "regression", "cache": str(run_cache),
            "recipe_hash": recipe_hash or meta.recipe_hash, "data": {"streams": streams}}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_the_runs_own_cache_passes_silently(cache: Path, tiny_cache, caplog) -> None:
    config = _config(cache, tiny_cache.streams)
    with caplog.at_level(logging.WARNING, LOGGER):
        check_cache_matches(config, cache)  # read from the folder
        check_cache_matches(config, cache.parent / "elsewhere", _info(_meta(), cache))  # the manifest given
    assert _warnings(caplog) == []


def test_another_profile_is_refused(cache: Path, tiny_cache, tmp_path: Path) -> None:
    config = _config(cache, tiny_cache.streams)
    with pytest.raises(ProfileMismatchError) as raised:
        check_cache_matches(config, tmp_path / "paper", _info(_meta(profile="paper"), tmp_path / "paper"))
    assert str(raised.value) == (f"the run was trained on profile 'tiny' but cache {tmp_path / 'paper'} is profile "
                                 f"'paper'; use a cache extracted with the same profile (the run's own cache is "
                                 f"{cache})")


def test_another_recipe_warns_naming_the_changes(cache: Path, tiny_cache, tmp_path: Path, caplog) -> None:
    config = _config(cache, tiny_cache.streams)
    meta = _meta(recipe={"synthetic": 1, "frames": 8})
    with caplog.at_level(logging.WARNING, LOGGER):
        check_cache_matches(config, tmp_path / "other", _info(meta, tmp_path / "other"))
    assert _warnings(caplog) == [
        f"cache {tmp_path / 'other'} was extracted with another recipe (hash {meta.recipe_hash[:12]}) than the "
        f"run's ({config['recipe_hash'][:12]}): frames absent -> 8, synthetic 0 -> 1 (run's cache -> this one); "
        f"numbers may not be comparable"]


def test_another_recipe_when_the_runs_cache_is_gone_or_re_extracted(cache: Path, tiny_cache, tmp_path: Path,
                                                                    caplog) -> None:
    meta = _meta(recipe={"synthetic": 1})
    gone = _config(tmp_path / "gone", tiny_cache.streams, recipe_hash="a" * 64)
    redone = _config(cache, tiny_cache.streams, recipe_hash="b" * 64)  # the folder holds another extraction now
    with caplog.at_level(logging.WARNING, LOGGER):
        for config in (gone, redone):
            check_cache_matches(config, tmp_path / "other", _info(meta, tmp_path / "other"))
    assert _warnings(caplog) == [
        f"cache {tmp_path / 'other'} was extracted with another recipe (hash {meta.recipe_hash[:12]}) than the "
        f"run's ({h * 12}): the run's cache is gone or re-extracted (run's cache -> this one); numbers may not be "
        f"comparable" for h in "ab"]


def test_other_weights_are_refused_naming_the_encoder(tiny_cache, tmp_path: Path) -> None:
    weights = {"roberta": {"model": "sha256:aa"}, "mel": {"bank": "sha256:cc"}, "clip_text": {}}
    run_cache = tiny_cache(tmp_path / "run-cache", n=12, recipe={"weights": weights})
    config = _config(run_cache, tiny_cache.streams)
    other = _meta(recipe={"synthetic": 0, "weights": {**weights, "roberta": {"model": "sha256:bb"},
                                                      "mel": {"bank": "sha256:dd"}}})
    with pytest.raises(ProfileMismatchError) as raised:
        check_cache_matches(config, tmp_path / "other", _info(other, tmp_path / "other"))
    assert str(raised.value) == (
        f"cache {tmp_path / 'other'} was extracted with other weights than the run's cache {run_cache} was: "
        f"encoder 'mel': bank is sha256:dd in this one, sha256:cc in the run's cache; "
        f"encoder 'roberta': model is sha256:bb in this one, sha256:aa in the run's cache; evaluate on a cache "
        f"extracted with the run's weight files")


def test_a_cache_of_another_dataset_with_the_runs_streams_is_evaluated_with_a_warning(cache: Path, tiny_cache,
                                                                                     tmp_path: Path, caplog) -> None:
    config = _config(cache, tiny_cache.streams)
    mosei = _meta(dataset="mosei", dims={"extra": 9})  # a stream the run does not read
    with caplog.at_level(logging.WARNING, LOGGER):
        check_cache_matches(config, tmp_path / "mosei", _info(mosei, tmp_path / "mosei"))
    assert _warnings(caplog) == [
        f"cross-corpus evaluation: run trained on sample, evaluated on mosei (cache {tmp_path / 'mosei'}); labels "
        f"are read as the run's task and label range",
        f"cache {tmp_path / 'mosei'} was extracted with another recipe (hash {mosei.recipe_hash[:12]}) than the run's "
        f"({config['recipe_hash'][:12]}): the same settings, other feature streams (run's cache -> this one); "
        f"numbers may not be comparable"]
    with pytest.raises(ProfileMismatchError, match="is profile 'paper'"):  # cross-corpus, still the same profile
        check_cache_matches(config, tmp_path / "mosei", _info(_meta(dataset="mosei", profile="paper"), tmp_path))


def test_a_cache_of_another_task_is_refused(cache: Path, tiny_cache, tmp_path: Path) -> None:
    config = _config(cache, tiny_cache.streams)
    with pytest.raises(ProfileMismatchError) as raised:
        check_cache_matches(config, tmp_path / "meld", _info(_meta("meld", task="classification"), tmp_path))
    assert str(raised.value) == (f"the run was trained on dataset 'sample' (regression) but cache {tmp_path / 'meld'} "
                                 f"is 'meld' (classification); cross-corpus evaluation needs the same task")


@pytest.mark.parametrize("dims", [{"mel": 3}, {"mel": None}], ids=["other width", "missing"])
def test_a_cache_of_another_dataset_needs_every_stream_of_the_run_at_its_width(cache: Path, tiny_cache,
                                                                               tmp_path: Path, dims) -> None:
    config = _config(cache, tiny_cache.streams)
    with pytest.raises(ProfileMismatchError) as raised:
        check_cache_matches(config, tmp_path / "mosei", _info(_meta("mosei", dims=dims), tmp_path))
    assert str(raised.value) == (
        f"cache {tmp_path / 'mosei'} (mosei) lacks stream 'mel' or has another width than the run's cache; "
        f"cross-corpus evaluation needs the run's streams {tiny_cache.streams}")


def test_stream_widths_go_unchecked_when_the_runs_cache_is_gone(tiny_cache, tmp_path: Path, caplog) -> None:
    config = _config(tmp_path / "gone", tiny_cache.streams, recipe_hash=_meta().recipe_hash)
    wider = _meta("mosei", dims={"mel": 3})
    with caplog.at_level(logging.WARNING, LOGGER):
        check_cache_matches(config, tmp_path / "mosei", _info(wider, tmp_path / "mosei"))  # the model checks them
    assert len(_warnings(caplog)) == 2 and _warnings(caplog)[0].startswith("cross-corpus evaluation")
    missing = _meta("mosei", dims={"mel": None})
    with pytest.raises(ProfileMismatchError, match="lacks stream 'mel'"):
        check_cache_matches(config, tmp_path / "mosei", _info(missing, tmp_path / "mosei"))


# --------------------------------------------------------------------------- masked items

def test_masked_counts_per_split_and_modality(cache: Path) -> None:
    assert masked_counts(cache, "test", ["text", "video", "audio"]) == {
        "items": 2, "per_modality": {"text": 0, "video": 2, "audio": 1}}
    assert masked_counts(cache, "train", ["text", "video", "audio", "depth"]) == {  # depth: not recorded, not masked
        "items": 1, "per_modality": {"text": 1, "video": 0, "audio": 0, "depth": 0}}
    assert masked_counts(cache, "valid", ["video"]) == {"items": 0, "per_modality": {"video": 0}}


def test_masked_note_sentences() -> None:
    none = {"split": "valid", "items": 8, "masked": {"items": 0, "per_modality": {"text": 0}}}
    assert masked_note(none) == "No valid item had a masked modality; the metrics cover all 8 items."
    some = {"split": "test", "items": 9, "masked": {"items": 3, "per_modality": {"text": 2, "video": 0, "audio": 1}}}
    assert masked_note(some) == ("3 of 9 test items had a masked modality (text 2, audio 1); they are scored with "
                                 "what they have, and the metrics cover all 9 items.")


# --------------------------------------------------------------------------- predictions.csv

def test_regression_predictions_rows_follow_the_index(tiny_facts, tmp_path: Path) -> None:
    preds = Predictions(np.array([2, 0, 1]), np.array([1234567.0, -0.5, 1 / 3]), 0.0)
    write_predictions(tmp_path / "p.csv", ["a", "b", "c"], preds, np.array([-3.0, 0.1234567, 2.5]), tiny_facts())
    assert (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines() == [
        "id,label,prediction", "c,-3,1.23457e+06", "a,0.123457,-0.5", "b,2.5,0.333333"]


def test_classification_predictions_name_the_classes_with_probabilities(tiny_facts, tmp_path: Path) -> None:
    logits = np.array([[0.0, 0.0, math.log(2.0)], [math.log(3.0), 0.0, 0.0]], dtype=np.float32)
    preds = Predictions(np.array([1, 0]), logits, 0.0)
    write_predictions(tmp_path / "p.csv", ["x", "y"], preds, np.array([1, 0]), tiny_facts("classification"))
    assert (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines() == [
        "id,label,prediction,p_negative,p_neutral,p_positive",
        "y,neutral,positive,0.250000,0.250000,0.500000",
        "x,negative,negative,0.600000,0.200000,0.200000"]


# --------------------------------------------------------------------------- classes of the confusion plots

def test_acc7_classes_clip_and_round_halves_to_even() -> None:
    truth = np.array([-3.6, -2.5, -1.5, -0.5, 0.49, 0.5, 1.5, 2.5, 2.51, 3.6])
    scores = -truth
    truth_classes, predicted, names, title = score_classes(truth, scores, "")
    assert truth_classes.tolist() == [0, 1, 1, 3, 3, 3, 5, 5, 6, 6]
    assert predicted.tolist() == [6, 5, 5, 3, 3, 3, 1, 1, 0, 0]
    assert names == ["-3", "-2", "-1", "0", "1", "2", "3"] and title == "Acc-7"


def test_sims_classes_are_mmsas_five() -> None:
    truth = np.array([-1.5, -0.7, -0.69, -0.1, -0.09, 0.1, 0.11, 0.7, 0.71, 1.5])
    truth_classes, predicted, names, title = score_classes(truth, np.zeros(10), "sims")
    assert truth_classes.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert predicted.tolist() == [2] * 10
    assert names == ["neg", "weak neg", "neutral", "weak pos", "pos"] and title == "Acc-5"


# --------------------------------------------------------------------------- t-SNE

def test_tsne_needs_three_items(tiny_facts, tmp_path: Path, caplog, one_openmp_thread: None) -> None:
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.WARNING, LOGGER):
        assert plot_tsne(tmp_path / "a.png", rng.normal(size=(2, 4)), np.zeros(2), tiny_facts()) is False
        assert plot_tsne(tmp_path / "b.png", None, np.zeros(2), tiny_facts()) is False
    assert _warnings(caplog) == [f"t-SNE needs at least 3 items with features; {tmp_path / n} not written"
                                 for n in ("a.png", "b.png")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task,n,perplexity", [("classification", 40, 13.0), ("regression", 3, 1.0),
                                                ("regression", 100, 30.0)])
def test_tsne_of_three_items_or_more_is_a_png(task: str, n: int, perplexity: float, tiny_facts, tmp_path: Path,
                                              drawn: list, one_openmp_thread: None) -> None:
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n) if task == "classification" else rng.uniform(-3, 3, n)
    features = rng.normal(size=(n, 4))
    with matplotlib.rc_context({"figure.dpi": 50}):  # the PNG is 100 dpi whatever the user's matplotlibrc says
        assert plot_tsne(tmp_path / "t.png", features, labels, tiny_facts(task), where="run-a test") is True
    assert _png_size(tmp_path / "t.png") == (600, 500)
    if n == 3:
        assert plot_tsne(tmp_path / "again.png", features, labels, tiny_facts(task)) is True
        fig, again = drawn
        assert again.axes[0].get_title() == ": t-SNE of the latent features, coloured by label"
        np.testing.assert_array_equal(fig.axes[0].collections[0].get_offsets(),  # the same picture each time
                                      again.axes[0].collections[0].get_offsets())
    (fig, *_) = drawn
    ax = fig.axes[0]
    assert ax.get_title() == "run-a test: t-SNE of the latent features, coloured by label"
    assert ax.title.get_fontsize() == 9
    # the documented settings: perplexity (n - 1) / 3 within [1, 30], a PCA start, seed 0
    expected = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(features)
    shown = np.concatenate([c.get_offsets() for c in ax.collections])
    order = np.concatenate([np.flatnonzero(labels == k) for k in range(3)]) if task == "classification" else ...
    assert {tuple(c.get_sizes()) for c in ax.collections} == {(8,)}
    np.testing.assert_allclose(shown, expected[order], rtol=1e-6)
    if task == "classification":
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["negative", "neutral", "positive"]
        assert legend.get_texts()[0].get_fontsize() == 7
        assert [len(c.get_offsets()) for c in ax.collections] == np.bincount(labels, minlength=3).tolist()
    else:
        assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "label"  # the colour bar
        (points,) = ax.collections
        assert len(points.get_offsets()) == n and points.get_cmap().name == "coolwarm"
        assert points.colorbar is not None and points.colorbar.ax is fig.axes[1]
        np.testing.assert_array_equal(points.get_array(), labels)


# --------------------------------------------------------------------------- the metrics table

def test_metric_columns_per_task_and_metric_set(tiny_facts) -> None:
    regression = [h for _, h in metric_columns(tiny_facts())]
    assert regression == ["MAE↓", "Corr↑", "Acc-7↑", "Acc-5↑", "Acc-2 has0↑", "F1 has0↑", "Acc-2 non0↑", "F1 non0↑"]
    sims = dataclasses.replace(tiny_facts(), metrics="sims", label_range=(-1.0, 1.0))
    assert metric_columns(sims) == [("mae", "MAE↓"), ("corr", "Corr↑"), ("mult_acc_2", "Acc-2↑"),
                                    ("mult_acc_3", "Acc-3↑"), ("mult_acc_5", "Acc-5↑"), ("f1_score", "F1↑")]
    assert metric_columns(tiny_facts("classification"), str.upper) == [
        ("f1_negative", "NEGATIVE"), ("f1_neutral", "NEUTRAL"), ("f1_positive", "POSITIVE"), ("accuracy", "Acc↑"),
        ("weighted_f1", "w-F1↑")]
    assert [k for k, _ in metric_columns(tiny_facts())] == ["mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0",
                                                            "acc2_non0", "f1_non0"]


def test_metrics_table_rows_title_and_caption(tiny_facts) -> None:
    rows = [("A", {"f1_negative": 0.5, "accuracy": 0.25, "weighted_f1": {"mean": 0.5, "std": 0.1, "n": 2}}),
            ("B", {})]
    table = metrics_table(tiny_facts("classification"), rows)
    assert table.title is None
    assert table.caption == ("MAE and Corr as decimals; accuracies and F1 in %; baseline: the train split's majority "
                             "class")
    assert [c.header for c in table.columns] == ["Method", "Negative", "Neutral", "Positive", "Acc↑", "w-F1↑"]
    assert [c.justify for c in table.columns] == ["left"] + ["right"] * 5 and table.columns[0].no_wrap
    assert [list(c.cells) for c in table.columns] == [["A", "B"], ["50.00", "-"], ["-", "-"], ["-", "-"],
                                                      ["25.00", "-"], ["50.00 ± 10.00", "-"]]
    assert metrics_table(tiny_facts(), [], title="T").title == "T"


# --------------------------------------------------------------------------- seeds

def test_seed_summary_mean_std_seeds_and_runs(class_runs: tuple[Path, Path], tiny_cache, tmp_path: Path,
                                              capsys) -> None:
    """Both runs evaluated on the split and cache asked for (another extraction of the same corpus here)."""
    other = tiny_cache(tmp_path / "other", task="classification", profile="tiny-classes", seed=1)
    buffer = io.StringIO()
    out = tmp_path / "summary.json"
    summary = summarize_seed_runs(list(class_runs), "valid", out, console=Console(file=buffer, width=250),
                                  device="cpu", cache_dir=other)
    assert summary["split"] == "valid" and summary["runs"] == [str(r) for r in class_runs]
    assert summary["seeds"] == [3, 4]
    ids, truth = _labels(other, "valid")
    for run in class_runs:
        rows = _predictions(run, "valid")
        assert [row["id"] for row in rows] == ids
        assert [CLASSES.index(row["label"]) for row in rows] == truth.astype(int).tolist()
    first, second = summary["per_run"]
    assert first == pytest.approx(_class_metrics(class_runs[0], "valid"))
    assert second == pytest.approx(_class_metrics(class_runs[1], "valid")) and first != second
    for name in first:
        a, b = first[name], second[name]
        assert summary["metrics"][name] == pytest.approx({"mean": (a + b) / 2, "std": abs(a - b) / math.sqrt(2),
                                                          "n": 2}), name
    _, train_labels = _labels(other, "train")
    assert summary["baseline"]["accuracy"] == np.mean(truth == np.bincount(train_labels.astype(int)).argmax())
    assert json.loads(out.read_text()) == summary  # these numbers are all finite: JSON holds them as they are
    printed = buffer.getvalue()
    assert printed.splitlines()[0].strip() == "sample valid: mean ± std over seeds [3, 4]"
    header, hcmnet, baseline = _rows(printed)
    acc = summary["metrics"]["accuracy"]
    assert header[4] == "Acc↑" and hcmnet[0] == "HCMNet (2 seeds)"
    assert hcmnet[4] == f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f}"
    assert baseline[:1] + baseline[4:5] == ["baseline", f"{100 * summary['baseline']['accuracy']:.2f}"]
    assert capsys.readouterr().out == ""  # each run's own table is not printed


# --------------------------------------------------------------------------- what the plots show

def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_scatter_shows_each_item_the_diagonal_and_the_acc2_boundary(tiny_facts, tmp_path: Path,
                                                                    drawn: list) -> None:
    from matplotlib.colors import to_rgba

    from hcm.training.evaluate import plot_scatter

    truth, scores = np.array([-2.0, 0.5, 1.0]), np.array([-1.0, -0.5, 1.5])
    with matplotlib.rc_context({"figure.dpi": 50}):  # the PNG is 100 dpi whatever the user's matplotlibrc says
        plot_scatter(tmp_path / "s.png", truth, scores, tiny_facts(), where="run-a test")
    assert _png_size(tmp_path / "s.png") == (550, 500)
    (fig,) = drawn
    (ax,) = fig.axes
    assert ax.get_title() == "run-a test: predicted against true score, MAE 0.833"  # (1 + 1 + 0.5) / 3
    assert ax.title.get_fontsize() == 9
    (points,) = ax.collections
    np.testing.assert_array_equal(points.get_offsets(), np.column_stack([truth, scores]))
    assert points.get_sizes().tolist() == [10] and points.get_alpha() == 0.6
    diagonal, vertical, horizontal = ax.lines
    assert (list(diagonal.get_xdata()), list(diagonal.get_ydata())) == ([-3.0, 3.0], [-3.0, 3.0])
    assert to_rgba(diagonal.get_color()) == to_rgba("grey") and diagonal.get_linewidth() == 1
    assert list(vertical.get_xdata()) == [0, 0] and list(horizontal.get_ydata()) == [0, 0]
    for line in (vertical, horizontal):
        assert to_rgba(line.get_color()) == to_rgba("tab:red") and line.get_linestyle() == "--"
        assert line.get_linewidth() == 1
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["prediction = truth", "Acc-2 boundary (0)"]
    assert legend._loc == 2 and legend.get_texts()[0].get_fontsize() == 7  # upper left
    assert ax.get_xlim() == (-3.0, 3.0)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("true score", "predicted score")


def test_scatter_of_no_item_says_mae_nan(tiny_facts, tmp_path: Path, drawn: list) -> None:
    from hcm.training.evaluate import plot_scatter

    plot_scatter(tmp_path / "s.png", np.array([]), np.array([]), tiny_facts())
    assert drawn[0].axes[0].get_title() == ": predicted against true score, MAE nan"


def test_confusion_counts_f1_labels_and_size(tmp_path: Path, drawn: list) -> None:
    from hcm.training.evaluate import plot_confusion

    truth, predicted = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    with matplotlib.rc_context({"figure.dpi": 50}):  # the PNG is 100 dpi whatever the user's matplotlibrc says
        plot_confusion(tmp_path / "m.png", truth, predicted, ["neg", "neu", "pos"], f1=True, title="Acc-3")
    assert _png_size(tmp_path / "m.png") == (1160, 530)  # 1.1 inch a class + 2, twice and a colour bar wide
    (fig,) = drawn
    counts, normalised = fig.axes[0], fig.axes[1]
    assert counts.get_title() == ": Acc-3 66.7%\nconfusion matrix, counts"
    assert counts.title.get_fontsize() == 9
    np.testing.assert_array_equal(counts.images[0].get_array(), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_allclose(normalised.images[0].get_array(), [[0.5, 0.5, 0], [0, 1, 0], [1 / 3, 0, 2 / 3]])
    # F1 by hand: neg 2*1/(2+2) = 0.5, neu 2*1/(1+2) = 0.67, pos 2*2/(3+2) = 0.8
    for ax in (counts, normalised):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["neg\nF1 0.50", "neu\nF1 0.67", "pos\nF1 0.80"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["neg", "neu", "pos"]
        assert {(t.get_rotation(), t.get_horizontalalignment()) for t in ax.get_xticklabels()} == {(45, "right")}
    assert sorted(t.get_text() for t in counts.texts) == ["0", "0", "0", "0", "1", "1", "1", "1", "2"]
    assert sorted(t.get_text() for t in normalised.texts) == ["0.00"] * 4 + ["0.33", "0.50", "0.50", "0.67", "1.00"]


def test_a_class_without_items_has_f1_zero_and_the_matrices_sit_side_by_side(tmp_path: Path, drawn: list) -> None:
    from hcm.training.evaluate import plot_confusion

    plot_confusion(tmp_path / "m.png", np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b", "c"], f1=True)
    (fig,) = drawn
    counts, normalised = fig.axes[0], fig.axes[1]
    # c has no true and no predicted item: F1 0 (as scikit-learn's zero_division=0 scores it), never 1
    assert [t.get_text() for t in counts.get_yticklabels()] == ["a\nF1 0.67", "b\nF1 0.67", "c\nF1 0.00"]
    assert normalised.get_position().x0 > counts.get_position().x1  # counts left, normalised right
    assert abs(normalised.get_position().y0 - counts.get_position().y0) < 0.05


def test_confusion_without_f1(tmp_path: Path, drawn: list) -> None:
    from hcm.training.evaluate import plot_confusion

    plot_confusion(tmp_path / "m.png", np.array([1]), np.array([1]), ["a", "b"])
    (one,) = drawn
    assert [t.get_text() for t in one.axes[0].get_yticklabels()] == ["a", "b"]
    assert one.axes[0].get_title() == ": accuracy 100.0%\nconfusion matrix, counts"
    assert _png_size(tmp_path / "m.png") == (940, 420)
