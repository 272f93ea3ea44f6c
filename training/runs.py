"""Run directories: their layout, finding caches and runs in a workspace, and the files a run writes.

    <workspace>/runs/<dataset>/<YYYYmmdd-HHMMSS>-<variant>[-s<seed>]/
        config.json            every setting of the run + the cache's dataset, profile, recipe hash
        metrics.csv            one row per epoch (train/valid losses, every validation metric)
        train.log              the same epochs as lines to read (appended to on resume)
        checkpoints/last.pt    the latest finished epoch (resume from here)
        checkpoints/best.pt    the best validation epoch: weights, epoch, run config (evaluate, predict)
        curves.png             loss and key-metric curves, the best epoch marked
        tensorboard/           event files (when tensorboard is installed)
        eval/<split>/          metrics.json, predictions.csv, plots (hcm.training.evaluate), tsne.png
    <workspace>/runs/<dataset>/<time>-<variant>-seeds/summary.json   (``--seeds``)

Every file but the appended ``train.log`` is written through :func:`hcm.core.files.atomic_write`.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from rich.progress import Progress

from hcm.cache.manifest import MANIFEST
from hcm.core.files import atomic_write, write_csv
from hcm.core.progress import progress_bar
from hcm.training import TrainingError
from hcm.training.faults import resume_command

CONFIG = "config.json"
log = logging.getLogger(__name__)


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
    def train_log(self) -> Path:
        return self.root / "train.log"

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


def check_run_folder(paths: RunPaths, resume: bool) -> None:
    """A resumed run needs a checkpoint; a new run needs a folder without one."""
    if resume and not paths.last.is_file():
        raise TrainingError(
            f"run {paths.root} has no checkpoint yet ({paths.last} is missing), so there is nothing to resume: "
            f"it stopped before its first checkpoint. Start a new run with `hcm train` (this folder can be "
            f"deleted)")
    if not resume and paths.config.exists():
        raise TrainingError(f"{paths.root} already holds a run; continue it with `{resume_command(paths.root)}`")


def start_or_resume(run: Path) -> bool:
    """Whether the run in a folder reused on every rerun (``hcm reproduce``, ``hcm tune``) is resumed:
    yes when it has a checkpoint; a folder without one (stopped before its first checkpoint, nothing
    to keep) is removed so that the run starts afresh there."""
    if RunPaths(run).last.is_file():
        return True
    if run.exists():
        shutil.rmtree(run)
    return False


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


def list_runs(runs_root: Path, dataset: str | None = None, nested: bool = False) -> list[Path]:
    """Run folders (those with a config.json), oldest first (by when their config was written).

    ``nested``: also the runs one level deeper (an ablation's, ``<dataset>/<time>-ablation/<setting>/``)."""
    top = dataset or "*"
    levels = [f"{top}/*/{CONFIG}", f"{top}/*/*/{CONFIG}"] if nested else [f"{top}/*/{CONFIG}"]
    configs = sorted((p for level in levels for p in runs_root.glob(level)),
                     key=lambda p: (p.stat().st_mtime, str(p.parent)))
    return [p.parent for p in configs]


def find_latest_run(runs_root: Path, dataset: str | None = None) -> Path:
    """The newest run folder in ``runs_root`` (optionally of one dataset)."""
    runs = list_runs(runs_root, dataset)
    if not runs:
        where = runs_root / dataset if dataset else runs_root
        others = sorted({run.parent.name for run in list_runs(runs_root)}) if dataset else []
        hint = (f"runs exist for {', '.join(others)}" if others
                else "train one with `hcm train` or pass --run DIR to commands that take one")
        raise FileNotFoundError(f"no training runs under {where}; {hint}")
    return runs[-1]


def list_caches(features_root: Path) -> list[Path]:
    """Feature caches of a workspace: ``features/<dataset>/<profile>/`` folders with a manifest."""
    return sorted(p.parent for p in features_root.glob(f"*/*/{MANIFEST}"))


def choose_cache(features_root: Path, given: Path | None = None,
                 ask: Callable[[list[Path]], Path] | None = None) -> Path:
    """The cache to train on: ``given``, else the workspace's only cache, else ``ask`` which.

    Raises a ValueError listing the caches when there are several and nobody can be asked.
    """
    if given is not None:
        if not (Path(given) / MANIFEST).is_file():
            raise FileNotFoundError(f"{given} is not a feature cache (no {MANIFEST}); "
                                    f"pass a folder made by `hcm extract`")
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
    """One bar per epoch, with the epoch's mean training loss so far (``train_loss`` at its end, as
    metrics.csv and train.log record it) and the validation key metric."""
    return progress_bar(enabled, "train_loss {task.fields[loss]}", "{task.fields[valid]}")


class RunLogger:
    """Writes ``metrics.csv`` (whole history, atomically), ``train.log`` (one line per epoch),
    TensorBoard events and the curve plot.

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
        with open(self.paths.train_log, "a", encoding="utf-8") as out:
            out.write(epoch_line(history[-1]) + "\n")
        if self.board is not None:
            row = history[-1]
            for name, value in row.items():
                if name != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.board.add_scalar(name.replace("_", "/", 1), value, row["epoch"])
            self.board.flush()

    def close(self, history: list[dict[str, Any]], key: str) -> None:
        """Close the event files and plot the curves; nothing is written into a run folder that was
        deleted meanwhile (its event writer's error is left unsaid: training reports the deletion)."""
        if not self.enabled:
            return
        gone = not self.paths.config.is_file()
        if self.board is not None:
            try:
                self.board.close()
            except OSError:
                if not gone:
                    raise
        if history and not gone:
            plot_curves({self.paths.root.name: history}, key, self.paths.curves)


class RunFolderGoneError(TrainingError):
    """The run folder was deleted (or moved) while training wrote into it."""


def check_run_folder_kept(paths: RunPaths, epoch: int) -> None:
    """Stop training whose run folder was deleted or moved instead of writing part of it again."""
    if not paths.config.is_file():
        raise RunFolderGoneError(
            f"the run folder {paths.root} was deleted or moved during training (its {CONFIG} was gone after "
            f"epoch {epoch}); training stopped without writing there again. Start a new run with `hcm train`")


def epoch_line(row: dict[str, Any]) -> str:
    """``epoch 3  train_loss 0.4213  valid_mae 0.8125  lr 0.001``: one epoch of ``metrics.csv`` to read."""
    parts = [f"{datetime.now():%Y-%m-%d %H:%M:%S}  epoch {row.get('epoch')}"]
    for name, value in row.items():
        if name != "epoch":
            parts.append(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}")
    return "  ".join(parts)


def _tensorboard(directory: Path, purge_step: int):
    """A SummaryWriter, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; no event files are written (pip install tensorboard)")
        return None
    return SummaryWriter(log_dir=str(directory), purge_step=purge_step)


def best_epoch_of(history: list[dict[str, Any]]) -> int | None:
    """The last epoch marked ``best`` in ``metrics.csv`` rows: the one ``checkpoints/best.pt`` holds."""
    marked = [row["epoch"] for row in history if row.get("best") in (True, 1, "True")]
    return int(marked[-1]) if marked else None


def plot_curves(histories: dict[str, list[dict[str, Any]]], key: str, path: Path) -> None:
    """Loss (left) and the validation key metric (right) per epoch, as a PNG: one run (train and
    valid loss) or several overlaid (valid loss), each run's best epoch marked with a dotted line
    and a star; the titles name the run(s), the split and the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    several = len(histories) > 1
    for k, (run, history) in enumerate(histories.items()):
        colour, epochs = f"C{k}", [row["epoch"] for row in history]
        if not several:
            left.plot(epochs, [row.get("train_loss", math.nan) for row in history], marker="o", label="train loss")
        left.plot(epochs, [row.get("valid_loss", math.nan) for row in history], marker="o",
                  color=colour if several else "C1", label=f"{run} valid loss" if several else "valid loss")
        right.plot(epochs, [row.get(f"valid_{key}", math.nan) for row in history], marker="o", markersize=4,
                   color=colour, label=run if several else f"valid {key}")
        best = best_epoch_of(history)
        if best is not None:
            row = next(r for r in history if int(r["epoch"]) == best)
            for ax in (left, right):
                ax.axvline(best, color=colour, linestyle=":", linewidth=1)
            right.scatter([best], [row.get(f"valid_{key}", math.nan)], marker="*", s=140, color=colour, zorder=3,
                          label=f"best epoch {best}")
    names = ", ".join(histories) if len(histories) < 3 else f"{len(histories)} runs"
    left.set_title(f"{names}: train/valid loss per epoch", fontsize=9)
    right.set_title(f"{names}: valid {key} per epoch (star: best epoch)", fontsize=9)
    for ax, label in ((left, "loss"), (right, f"valid {key}")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
