"""Run directories: their layout, finding caches and runs in a workspace, and the files a run writes.

    <workspace>/runs/<dataset>/<YYYYmmdd-HHMMSS>-<variant>[-s<seed>]/
        config.json            every setting of the run + the cache's dataset, profile, recipe hash
        metrics.csv            one row per epoch (train/valid losses, every validation metric)
        checkpoints/last.pt    the latest finished epoch (resume from here)
        checkpoints/best.pt    the epoch with the best validation key metric
        curves.png             loss and key-metric curves
        tensorboard/           event files (when tensorboard is installed)
        eval/<split>/          metrics.json, predictions.csv, confusion.png, tsne.png
    <workspace>/runs/<dataset>/<time>-<variant>-seeds/summary.json   (``--seeds``)

Every file is written to a temporary name and moved into place with ``os.replace``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

CONFIG = "config.json"
log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def eval_dir(self, split: str) -> Path:
        return self.root / "eval" / split


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and move it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python numbers, so the JSON is standard."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # numpy / torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(json_safe(data), indent=2, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error}); the run directory is damaged") from error


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV; the header is the union of keys in first-seen order."""
    header = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))


def new_run_dir(runs_root: Path, dataset: str, variant: str, suffix: str = "") -> Path:
    """A fresh ``runs/<dataset>/<time>-<variant><suffix>`` folder (a counter is added on clashes)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = runs_root / dataset / f"{stamp}-{variant}{suffix}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}.{n}")
    path.mkdir(parents=True)
    return path


def list_runs(runs_root: Path, dataset: str | None = None) -> list[Path]:
    """Run folders (those with a config.json), oldest first (by when their config was written)."""
    pattern = f"{dataset}/*/{CONFIG}" if dataset else f"*/*/{CONFIG}"
    configs = sorted(runs_root.glob(pattern), key=lambda p: (p.stat().st_mtime, p.parent.name))
    return [p.parent for p in configs]


def find_latest_run(runs_root: Path, dataset: str | None = None) -> Path:
    """The newest run folder in ``runs_root`` (optionally of one dataset)."""
    runs = list_runs(runs_root, dataset)
    if not runs:
        where = runs_root / dataset if dataset else runs_root
        raise FileNotFoundError(f"no training runs under {where}; train one with `hcm train` or pass --run DIR")
    return runs[-1]


def list_caches(features_root: Path) -> list[Path]:
    """Feature caches of a workspace: ``features/<dataset>/<profile>/`` folders with a manifest."""
    return sorted(p.parent for p in features_root.glob(f"*/*/{MANIFEST}"))


def choose_cache(features_root: Path, given: Path | None = None, ask: Callable[[list[Path]], Path] | None = None) -> Path:
    """The cache to train on: ``given``, else the workspace's only cache, else ``ask`` which.

    Raises a ValueError listing the caches when there are several and nobody can be asked.
    """
    if given is not None:
        if not (Path(given) / MANIFEST).is_file():
            raise FileNotFoundError(f"{given} is not a feature cache (no {MANIFEST}); pass a folder made by `hcm extract`")
        return Path(given)
    caches = list_caches(features_root)
    if not caches:
        raise FileNotFoundError(
            f"no feature cache under {features_root}; make one with `hcm extract` (or `hcm sample` then "
            f"`hcm extract --dataset sample`), or pass --features DIR"
        )
    if len(caches) == 1:
        return caches[0]
    if ask is not None:
        return ask(caches)
    listing = "\n".join(f"  {c}" for c in caches)
    raise ValueError(f"the workspace holds {len(caches)} feature caches; choose one with --features DIR:\n{listing}")


# --------------------------------------------------------------------------- what a run logs


def epoch_progress(enabled: bool) -> Progress:
    """A rich progress display with one bar per epoch (loss and validation key metric fields)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[valid]}"), TimeElapsedColumn(),
        disable=not enabled,
    )


class RunLogger:
    """Writes ``metrics.csv`` (whole history, atomically), TensorBoard events and the curve plot.

    Only the process with ``enabled=True`` (rank 0) writes anything.
    """

    def __init__(self, paths: RunPaths, enabled: bool, first_epoch: int) -> None:
        self.paths = paths
        self.enabled = enabled
        self.board = None
        if enabled:
            self.board = _tensorboard(paths.tensorboard, purge_step=first_epoch + 1)

    def epoch(self, history: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        write_csv(self.paths.metrics_csv, history)
        if self.board is not None:
            row = history[-1]
            for name, value in row.items():
                if name != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.board.add_scalar(name.replace("_", "/", 1), value, row["epoch"])
            self.board.flush()

    def close(self, history: list[dict[str, Any]], key: str) -> None:
        if not self.enabled:
            return
        if self.board is not None:
            self.board.close()
        if history:
            plot_curves(history, key, self.paths.curves)


def _tensorboard(directory: Path, purge_step: int):
    """A SummaryWriter, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; no event files are written (pip install tensorboard)")
        return None
    return SummaryWriter(log_dir=str(directory), purge_step=purge_step)


def plot_curves(history: list[dict[str, Any]], key: str, path: Path) -> None:
    """Loss curves (left) and the validation key metric (right) per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("train_loss", "valid_loss"):
        left.plot(epochs, [row.get(name, math.nan) for row in history], marker="o", label=name)
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [row.get(f"valid_{key}", math.nan) for row in history], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel(f"valid {key}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


# --------------------------------------------------------------------------- workspace level (the CLI's entry points)
# ``hcm.model.trainer`` imports this module for the paths above, so the two functions below
# import the trainer and the evaluator when called.


@dataclass
class TrainRequest:
    """What ``hcm train`` asks for.

    Args:
        features: the cache (default: the workspace's only cache).
        overrides: settings over the dataset's shipped config: ``{"epochs": 5, "model.dropout": 0.2}``;
            a bare name is looked up in the train settings, then in the model settings.
        seeds: train once per seed and report mean ± std on ``split``.
        resume: continue ``run`` (default: the latest run) from its last checkpoint.
        model_factory: ``"module:Name"`` of another model with HCMNet's batch/output contract.
    """

    features: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] | None = None
    resume: bool = False
    run: Path | None = None
    model_factory: str | None = None
    split: str = "test"
    progress: bool = True


def apply_overrides(train: dict[str, Any], model: dict[str, Any], overrides: dict[str, Any],
                    train_keys: set[str], model_keys: set[str]) -> None:
    """Put each override into the train or the model settings (``train.x``/``model.x`` or a bare name)."""
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section not in ("", "train", "model"):
            raise ValueError(f"setting {key!r}: the prefix must be 'train.' or 'model.'")
        if section == "train" or (not section and name in train_keys):
            if name not in train_keys:
                raise ValueError(f"unknown train setting {name!r}; known: {sorted(train_keys)}")
            train[name] = value
        elif name in model_keys:
            model[name] = value
        else:
            raise ValueError(f"unknown setting {key!r}; train settings: {sorted(train_keys)}; "
                             f"model settings: {sorted(model_keys)}")


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "variant=no-acl"]`` -> values parsed as JSON where they are JSON, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r} must look like key=value (e.g. --set dropout=0.2)")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def resolve_settings(dataset: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and model settings: the dataset's shipped file (defaults if it has none) with ``overrides``."""
    import dataclasses

    from hcm.model.config import ModelConfig, load_hparams
    from hcm.model.trainer import TrainConfig

    try:
        hparams = load_hparams(dataset)
    except FileNotFoundError:
        log.warning("no shipped hyper-parameters for dataset %r; using the defaults", dataset)
        hparams = {"model": {}, "train": {}}
    train, model = dict(hparams["train"]), dict(hparams["model"])
    apply_overrides(train, model, overrides, {f.name for f in dataclasses.fields(TrainConfig)},
                    {f.name for f in dataclasses.fields(ModelConfig)})
    return train, model


def train_in_workspace(workspace: Any, request: TrainRequest,
                       ask: Callable[[list[Path]], Path] | None = None) -> list[Any]:
    """``hcm train``: pick the cache, assemble the settings, train (once, per seed, or resumed)."""
    from hcm.model.config import DatasetFacts, ModelConfig
    from hcm.model.data import read_cache_meta
    from hcm.model.evaluate import summarize_seed_runs
    from hcm.model.trainer import TrainConfig, setup_distributed, train

    if request.resume:
        run = Path(request.run) if request.run else find_latest_run(workspace.runs)
        config = read_json(RunPaths(run).config, "run config")
        if request.overrides:
            log.warning("--resume continues with the run's own settings; ignoring %s", sorted(request.overrides))
        result = train(config["cache"], run, TrainConfig.from_dict(config["train"]),
                       ModelConfig.from_dict(config["model"]), facts=DatasetFacts.from_dict(config["facts"]),
                       model_factory=config["model_factory"], resume=True, progress=request.progress)
        return [result]
    cache = choose_cache(workspace.features, request.features, ask)
    meta, _ = read_cache_meta(cache)
    train_dict, model_dict = resolve_settings(meta.dataset, request.overrides)
    model_cfg = ModelConfig.from_dict(model_dict, "settings")
    first = TrainConfig.from_dict(train_dict, "settings")
    rank = setup_distributed(first.device).rank  # under torchrun every rank must use rank 0's folder
    seeds = request.seeds or [first.seed]
    results, suffix = [], len(seeds) > 1
    for seed in seeds:
        cfg = TrainConfig.from_dict({**train_dict, "seed": seed}, "settings")
        run = _agreed(rank, lambda: new_run_dir(workspace.runs, meta.dataset, model_cfg.variant,
                                                f"-s{seed}" if suffix else ""))
        results.append(train(cache, run, cfg, model_cfg, model_factory=request.model_factory,
                             progress=request.progress))
    if suffix and rank == 0:
        out = new_run_dir(workspace.runs, meta.dataset, model_cfg.variant, "-seeds") / "summary.json"
        summarize_seed_runs([r.run_dir for r in results], request.split, out)
    return results


def _agreed(rank: int, make: Callable[[], Path]) -> Path:
    """``make()`` on rank 0, shared with every rank of a distributed run."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return make()
    box = [make() if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def evaluate_in_workspace(workspace: Any, run: Path | None = None, split: str = "test",
                          features: Path | None = None, tsne: bool = False, device: str = "auto") -> dict[str, Any]:
    """``hcm evaluate``: the given run (default: the latest in the workspace), its best checkpoint."""
    from hcm.model.evaluate import evaluate_run

    chosen = Path(run) if run is not None else find_latest_run(workspace.runs)
    return evaluate_run(chosen, split, cache_dir=features, tsne=tsne, device=device)


def ask_cache(caches: list[Path]) -> Path:
    """Ask on the terminal which of several caches to train on."""
    from rich.prompt import IntPrompt

    console = Console(stderr=True)
    console.print("The workspace holds several feature caches:")
    for n, cache in enumerate(caches, start=1):
        console.print(f"  [bold]{n}[/] {cache}")
    choice = IntPrompt.ask("Train on which?", choices=[str(n) for n in range(1, len(caches) + 1)], console=console)
    return caches[choice - 1]


def report_errors(work: Callable[[], Any], also: tuple[type[Exception], ...] = ()) -> int:
    """Run ``work``; print a known error (or one of ``also``) as one clear message instead of a
    traceback. Returns the exit status."""
    from hcm.cache import CacheError
    from hcm.model.trainer import TrainingError

    try:
        work()
    except (TrainingError, CacheError, ValueError, FileNotFoundError, *also) as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        return 1
    return 0


def train_command(workspace: Any, request: TrainRequest, interactive: bool = False) -> int:
    """``hcm train`` with its errors reported as messages; returns the exit status."""
    return report_errors(lambda: train_in_workspace(workspace, request, ask_cache if interactive else None))


def evaluate_command(workspace: Any, run: Path | None, split: str, features: Path | None, tsne: bool,
                     device: str) -> int:
    """``hcm evaluate`` with its errors reported as messages; returns the exit status."""
    return report_errors(lambda: evaluate_in_workspace(workspace, run, split, features, tsne, device))
