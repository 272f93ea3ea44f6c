"""The every-option table's checks of the commands that train and read runs: train, evaluate,
runs, ablate, quickstart, explain, tune, reproduce. Each takes the session fixtures it names."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from cli_options import (
    SMALL,
    TRAIN_GIVEN,
    Run,
    Space,
    config_of,
    defaults,
    evaluate,
    hcm,
    items_of,
    ok,
    small_size_keys,
)

from hcm.cache import FeatureCache


def check_train_setting(trained: Run, key: str) -> None:
    train, _ = defaults()
    given = TRAIN_GIVEN[key][1]
    assert config_of(trained)["train"][key] == given and train[key] != given, (key, train[key])


def check_train_variant(trained: Run) -> None:
    assert config_of(trained)["model"]["variant"] == "no-acl" and defaults()[1]["variant"] == "full"
    assert trained.runs[0].name.endswith("-no-acl-tv")


def check_train_modalities(trained: Run) -> None:
    assert config_of(trained)["model"]["modalities"] == "tv" and defaults()[1]["modalities"] == "tva"


def check_train_ot_backend(trained: Run) -> None:
    assert config_of(trained)["model"]["ot_backend"] == "pot" != defaults()[1]["ot_backend"]


def check_train_features(trained: Run, space: Space) -> None:
    assert Path(config_of(trained)["cache"]) == space.cache


def check_train_config(trained: Run) -> None:
    assert config_of(trained)["train"]["patience"] == 7 != defaults()[0]["patience"]


def check_train_set(trained: Run) -> None:
    model = config_of(trained)["model"]
    assert (model["d_model"], model["m_gcn"], model["m_c"], model["ot_iters"], model["num_heads"]) == (16, 1, 1, 5, 2)
    assert defaults()[1]["d_model"] != 16


def check_train_threads(trained: Run) -> None:
    assert trained.threads == 1


def check_train_model_size(space: Space) -> None:
    """On a paper-profile cache (where auto means the paper's size) --model-size small wins."""
    run = ok(hcm(space, "train", "--epochs", "1", "--model-size", "small", "--quiet", "--features", str(space.paper)))
    small_size_keys(config_of(run), set())


def check_train_seeds(space: Space) -> None:
    run = ok(hcm(space, "train", "--epochs", "1", "--seeds", "3,4", "--features", str(space.cache), "--quiet", *SMALL))
    folders = {path.name.rsplit("-", 1)[-1]: path for path in run.runs}
    assert sorted(folders) == ["s3", "s4", "seeds"], run.runs
    assert [json.loads((folders[s] / "config.json").read_text())["train"]["seed"] for s in ("s3", "s4")] == [3, 4]
    summary = json.loads((folders["seeds"] / "summary.json").read_text())
    assert summary["seeds"] == [3, 4] and summary["runs"] == [str(folders["s3"]), str(folders["s4"])]
    assert summary["metrics"]["mae"]["n"] == 2 and "mean ± std over seeds [3, 4]" in run.result.output


def check_evaluate_split(space: Space, trained: Run) -> None:
    _, report = evaluate(space, trained, "--split", "valid")
    with FeatureCache(space.cache) as cache:
        valid = sum(cache[i].split == "valid" for i in range(len(cache)))
    assert report["split"] == "valid" and report["items"] == valid


def check_evaluate_features(space: Space, trained: Run) -> None:
    _, report = evaluate(space, trained, "--split", "test", "--features", str(space.other_cache))
    ids = {line.split(",")[0] for line in
           (trained.runs[0] / "eval" / "test" / "predictions.csv").read_text().splitlines()[1:]}
    with FeatureCache(space.other_cache) as cache:
        other = {cache[i].id for i in range(len(cache)) if cache[i].split == "test"}
    assert ids == other and str(space.other_cache) in json.dumps(report)


def check_evaluate_threads(space: Space, trained: Run) -> None:
    run, _ = evaluate(space, trained, "--threads", "1")
    assert run.threads == 1


def check_evaluate_device(space: Space, trained: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from hcm.training import evaluate as module

    asked: list[str] = []
    resolve = module.resolve_device
    monkeypatch.setattr(module, "resolve_device", lambda device: asked.append(device) or resolve(device))
    evaluate(space, trained, "--device", "cpu")
    assert asked == ["cpu"]


def check_runs_dataset(space: Space, trained: Run) -> None:
    """Each dataset's listing is the rows of that dataset in the full one (an error where it has none)."""
    every = json.loads(ok(hcm(space, "runs", "--json")).result.stdout)
    assert str(trained.runs[0]) in [row["run"] for row in every]
    for dataset in ("sample", "mosei"):
        expected = sorted(row["run"] for row in every if row["dataset"] == dataset)
        listed = hcm(space, "runs", "--dataset", dataset, "--json").result
        if expected:
            assert sorted(row["run"] for row in json.loads(listed.stdout)) == expected
        else:
            assert listed.exit_code == 1 and f"no training runs under {space.root / 'runs' / dataset}" in listed.output


def check_ablate_seeds(space: Space) -> None:
    run = ok(hcm(space, "ablate", "--variants", "full", "--modalities", "", "--seeds", "1,2", "--epochs", "1",
                 "--features", str(space.cache), "--quiet", *SMALL, "--set", "batch_size=16"))
    (folder,) = [path for path in (space.root / "runs" / "sample").iterdir() if path.name.endswith("-ablation")]
    (setting,) = json.loads((folder / "ablation.json").read_text())["settings"]
    seeds = [json.loads((Path(row["run"]) / "config.json").read_text())["train"]["seed"] for row in setting["per_seed"]]
    assert seeds == [1, 2] and setting["metrics"]["mae"]["n"] == 2, run.result.output


def check_quickstart_threads(space: Space, tmp_path: Path) -> None:
    settings = tmp_path / "quickstart.json"
    settings.write_text("{not json")  # refused when read, after the threads are set: nothing else runs
    torch.set_num_threads(2)
    run = hcm(dataclasses.replace(space, root=tmp_path / "w"), "quickstart", "--config", str(settings), "--threads",
              "1", "--quiet")
    assert run.result.exit_code != 0 and "Traceback" not in run.result.output
    assert run.threads == 1


def check_explain(space: Space, full_run: Path, tmp_path: Path) -> None:
    """--run, --split, --features, --device and --threads of one explanation of the worst item."""
    run = ok(hcm(space, "explain", "--run", str(full_run), "--split", "valid", "--features", str(space.other_cache),
                 "--worst", "1", "--device", "cpu", "--threads", "1", "--out", str(tmp_path)))
    (doc,) = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert items_of(space.other_cache)[doc["id"]] == "valid" and run.threads == 1, doc.get("id")


def check_tune(space: Space, tmp_path: Path) -> None:
    """--features, --study, --seed and --model-size of a one-trial search."""
    search = tmp_path / "space.json"
    search.write_text(json.dumps({"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}))
    given = {"m_gcn", "m_c", "ot_iters", "d_model", "num_heads"}
    run = ok(hcm(space, "tune", "--features", str(space.paper), "--study", "every-option", "--seed", "21",
                 "--model-size", "small", "--space", str(search), "--trials", "1", "--epochs", "1",
                 "--confirm-seeds", "9", "--top", "1", "--heartbeat", "2", "--quiet", *SMALL))
    assert (space.root / "tune" / "every-option" / "best-config.json").is_file()
    configs = [json.loads((path / "config.json").read_text()) for path in run.runs if (path / "config.json").exists()]
    search_runs = [c for c in configs if c["train"]["seed"] != 9]
    assert search_runs and all(c["train"]["seed"] == 21 for c in search_runs)
    assert all(Path(c["cache"]) == space.paper for c in configs)
    small_size_keys(configs[0], given)


def check_reproduce(space: Space) -> None:
    """--features, --variants, --model-size and --threads of a one-seed reproduction."""
    run = ok(hcm(space, "reproduce", "--dataset", "mosei", "--features", str(space.paper), "--seeds", "1",
                 "--variants", "no-acl", "--epochs", "1", "--model-size", "small", "--threads", "1", "--quiet", *SMALL))
    (folder,) = [path for path in run.runs if path.name.startswith("reproduce-mosei-") and path.name.endswith("-s1")]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["variant"] == "no-acl" and Path(config["cache"]) == space.paper and run.threads == 1
    small_size_keys(config, {"m_gcn", "m_c", "ot_iters", "d_model", "num_heads"})
