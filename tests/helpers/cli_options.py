"""What the every-option table (tests/cli/test_cli_every_option.py) shares: the workspace it runs
in, one ``hcm`` call and what it left, the settings a run gets without options."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from typer.testing import CliRunner, Result

from hcm.cache import FeatureCache
from hcm.cli import app

runner = CliRunner()


SMALL = ["--set", "d_model=16", "--set", "m_gcn=1", "--set", "m_c=1", "--set", "ot_iters=5", "--set", "num_heads=2"]


@dataclass(frozen=True)
class Space:
    """A workspace with one tiny cache of the ``sample`` dataset (and a second one, for --features)."""

    root: Path
    cache: Path
    other_cache: Path
    paper: Path  # a paper-profile cache of the mosei dataset, outside the workspace


@dataclass(frozen=True)
class Run:
    """What one ``hcm`` call left: its result, torch's thread count when it returned, new run folders."""

    result: Result
    threads: int
    runs: list[Path]


def hcm(space: Space, *args: str) -> Run:
    """``hcm -w <space> args``; torch's thread count is put back afterwards (--threads sets it)."""
    before_threads = torch.get_num_threads()
    before = set((space.root / "runs").rglob("config.json")) | set((space.root / "runs").rglob("summary.json"))
    try:
        result = runner.invoke(app, ["-w", str(space.root), *args])
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before_threads)
    after = set((space.root / "runs").rglob("config.json")) | set((space.root / "runs").rglob("summary.json"))
    return Run(result, threads, sorted(path.parent for path in after - before))


def ok(run: Run) -> Run:
    assert run.result.exit_code == 0, run.result.output
    return run


# One run with many train options at values unlike the defaults; each train row checks its own.
TRAIN_GIVEN = {"epochs": ("--epochs", 1), "batch_size": ("--batch-size", 8), "lr": ("--lr", 0.002),
               "seed": ("--seed", 5), "device": ("--device", "cpu"), "num_workers": ("--workers", 1),
               "skip_nonfinite": ("--skip-nonfinite", 2), "in_memory": ("--in-memory", True)}


def config_of(run: Run) -> dict:
    return json.loads((run.runs[0] / "config.json").read_text())


def defaults() -> tuple[dict, dict]:
    """Every train and model setting a run on the tiny cache gets without options."""
    from hcm.apps.train import resolve_settings
    from hcm.model.config import ModelConfig
    from hcm.training.settings import TrainConfig

    train, model = resolve_settings("sample", {}, "tiny", "auto")
    return TrainConfig.from_dict(train).to_dict(), dataclasses.asdict(ModelConfig.from_dict(model))


def evaluate(space: Space, trained: Run, *args: str) -> tuple[Run, dict]:
    run = ok(hcm(space, "evaluate", "--run", str(trained.runs[0]), *args))
    split = args[args.index("--split") + 1] if "--split" in args else "test"
    return run, json.loads((trained.runs[0] / "eval" / split / "metrics.json").read_text())


@dataclass(frozen=True)
class Corpus:
    """A small sample corpus (MMSA layout) and the extract arguments every data row starts from."""

    root: Path
    args: tuple[str, ...]


def items_of(cache: Path) -> dict[str, str]:
    with FeatureCache(cache) as opened:
        return {opened[i].id: opened[i].split for i in range(len(opened))}


WEIGHT_NAMES = {"--clip-weights": "CLIP RN50", "--clip-vocab": "CLIP BPE vocabulary",
                "--efficientnet-weights": "EfficientNet", "--esresnext-weights": "ESResNeXt-FBSP"}


def missing_weights(space: Space, corpus: Corpus, *args: str) -> str:
    """The missing-weights message of a paper-profile extraction (nothing is decoded)."""
    paper = [*corpus.args[:5], "--profile", "paper", "--quiet", *args]
    run = hcm(space, *paper)
    assert run.result.exit_code == 2 and "cannot start" in run.result.output, run.result.output
    return run.result.output


def import_mmsa(space: Space, source: Path, *args: str) -> Run:
    return hcm(space, "import", "mmsa", str(source), "--dataset", "mosi", "--profile", "tiny", "--quiet", *args)


def small_size_keys(config: dict, given: set) -> None:
    """``config`` (a run on the mosei paper-profile cache) has the small model's values where small
    and the paper's size differ."""
    from hcm.apps.train import resolve_settings

    small, paper = (resolve_settings("mosei", {}, "paper", size)[1] for size in ("small", "paper"))
    differ = [key for key in small if small[key] != paper[key] and key not in given]
    assert differ and all(config["model"][key] == small[key] for key in differ), differ
