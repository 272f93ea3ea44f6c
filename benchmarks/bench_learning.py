"""Does a setting learn? Train on tiny-profile caches, score test against the trivial baseline.

Run by hand (numbers go to benchmarks/RESULTS.md with the machine, date and load they ran at):

    hcm sample --dataset all --quiet            # and with --faults into another workspace
    hcm extract --dataset mosei --data-root $HCM_HOME/data/sample-mosei --profile tiny --workers 0
    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_learning.py \\
        --cache $HCM_HOME/features/mosei/tiny --seeds 0,1,2 --epochs 10 \\
        --setting shipped= --setting lr=lr=0.001,batch_size=16

Each ``--setting NAME=k=v,k=v`` lays its ``--set``-style overrides over the settings
``hcm train`` picks for the cache (the dataset's shipped file and the model size for the
cache's profile). For each setting and seed it prints the test key metric, the trivial
baseline's, and how spread the predictions are: for regression the standard deviation of the
predictions over that of the labels, for classification the number of distinct predicted
classes. A JSON line per run follows the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcm.apps.train import resolve_settings
from hcm.cache import FeatureCache
from hcm.core.device import resolve_device
from hcm.model.config import ModelConfig
from hcm.training import metrics as M
from hcm.training.data import CacheDataset, DataConfig, read_cache_meta
from hcm.training.distributed import Dist
from hcm.training.evaluate import load_run_model
from hcm.training.runs import RunPaths
from hcm.training.settings import DatasetFacts, TrainConfig
from hcm.training.trainer import eval_loader, predict, train


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``name=k=v,k=v`` -> (name, {k: v}); ``name=`` is no override."""
    name, _, rest = text.partition("=")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    return name, overrides


def test_scores(run_dir: Path) -> dict[str, Any]:
    """The best checkpoint's test metric, the baseline's, and the spread of its predictions."""
    paths = RunPaths(run_dir)
    config = json.loads(paths.config.read_text())
    facts = DatasetFacts.from_dict(config["facts"])
    cache = Path(config["cache"])
    data = CacheDataset(cache, "test", DataConfig(**config["data"]))
    d = Dist(0, 1, resolve_device("cpu"))
    model, _ = load_run_model(paths, config, "best", d.device)
    preds = predict(model, eval_loader(data, TrainConfig(batch_size=64), d), d)
    labels = data.labels[preds.index]
    train_labels = FeatureCache(cache, split="train", features=[]).labels
    key = config["key_metric"]
    ours = M.compute_metrics(facts.task, preds.scores, labels, facts.class_names, facts.metrics)[key]
    base = M.baseline_metrics(facts.task, train_labels, labels, facts.class_names, facts.metrics)[key]
    if facts.task == M.REGRESSION:
        spread = float(np.std(preds.scores) / max(np.std(labels), 1e-12))
    else:
        spread = float(len(np.unique(np.asarray(preds.scores).argmax(-1))))
    return {"key": key, "test": float(ours), "baseline": float(base), "spread": spread}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", action="append", required=True, help="a tiny-profile cache folder (repeat)")
    parser.add_argument("--setting", action="append", default=None, help="NAME=k=v,k=v (repeat)")
    parser.add_argument("--seeds", default="0", help="comma list")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = [parse_setting(s) for s in (args.setting or ["shipped="])]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for cache in args.cache:
            meta, _ = read_cache_meta(Path(cache))
            for name, overrides in settings:
                scores = []
                for seed in seeds:
                    train_dict, model_dict = resolve_settings(
                        meta.dataset, {"epochs": args.epochs, "seed": seed, "in_memory": True,
                                       "device": "cpu", **overrides}, meta.profile)
                    run = Path(scratch) / f"{meta.dataset}-{name}-{seed}-{len(rows)}"
                    started = time.perf_counter()
                    train(cache, run, TrainConfig.from_dict(train_dict), ModelConfig.from_dict(model_dict),
                          progress=False)
                    result = {"cache": cache, "setting": name, "seed": seed, **test_scores(run),
                              "seconds": round(time.perf_counter() - started, 1)}
                    print(json.dumps(result), flush=True)
                    scores.append(result)
                rows.append((meta.dataset, name, scores))
    print(f"\n{'dataset':8} {'setting':28} {'test':>15} {'baseline':>8} {'spread':>6}")
    for dataset, name, scores in rows:
        tests = [s["test"] for s in scores]
        sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(f"{dataset:8} {name:28} {statistics.mean(tests):7.3f} ± {sd:5.3f} {scores[0]['baseline']:8.3f} "
              f"{statistics.mean(s['spread'] for s in scores):6.2f}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
