"""Evaluating a trained run on a split: metrics, trivial baselines, predictions and plots.

``evaluate_run`` rebuilds the model from ``<run>/config.json``, loads a checkpoint (the best
epoch by default), predicts the split, and writes ``<run>/eval/<split>/``:

- ``metrics.json``: the model's metrics, the trivial baselines on the same split (train mean /
  majority class, fitted on the train labels), for regression the same metrics under the MMSA
  framework's key names rounded to 4 decimals (``mmsa``, repeated at the top level so that
  ``report["Non0_F1_score"]`` works as on MMSA's result dicts), and where the numbers come from;
- ``predictions.csv``: id, label, prediction and, for classification, one probability per class;
- plots: for classification ``confusion.png`` (each true class labelled with its F1); for
  regression ``scatter.png`` (predicted against true, with the Acc-2 boundary) and
  ``confusion_acc7.png`` (the Acc-7 classes; ``confusion_acc5.png`` for CH-SIMS); with
  ``tsne=True`` also ``tsne.png`` of the model's ``.features`` (sklearn's t-SNE).

The table is printed first, with how many items had a masked modality (they are evaluated
with the modalities they have; none is left out), then the files are written; a file that
cannot be written is reported after the table.

The printed table follows the paper's Table 2 (IEMOCAP/MELD: per-class F1, w-F1) and Table 3
(MOSEI: MAE, Corr, Acc-7, Acc-2, F1), with both Acc-2 variants named.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from hcm.cache import CacheMeta, FeatureCache
from hcm.cache.schema import recipe_changes, weight_changes
from hcm.core.device import resolve_device
from hcm.core.files import atomic_write, read_json, write_json
from hcm.core.tables import UNITS, metric_cell, print_table
from hcm.model.config import ModelConfig
from hcm.training import TrainingError
from hcm.training import metrics as M
from hcm.training.checkpoints import load_checkpoint
from hcm.training.data import CacheDataset, CacheInfo, DataConfig, cache_info, read_cache_meta
from hcm.training.distributed import Dist
from hcm.training.inference import Predictions, eval_loader, make_model, predict
from hcm.training.model_source import check_run_config, model_factory
from hcm.training.runs import RunPaths
from hcm.training.settings import DatasetFacts, TrainConfig

log = logging.getLogger(__name__)
REGRESSION_COLUMNS = [("mae", "MAE↓"), ("corr", "Corr↑"), ("acc7", "Acc-7↑"), ("acc5", "Acc-5↑"),
                      ("acc2_has0", "Acc-2 has0↑"), ("f1_has0", "F1 has0↑"),
                      ("acc2_non0", "Acc-2 non0↑"), ("f1_non0", "F1 non0↑")]
SIMS_COLUMNS = [("mae", "MAE↓"), ("corr", "Corr↑"), ("mult_acc_2", "Acc-2↑"), ("mult_acc_3", "Acc-3↑"),
                ("mult_acc_5", "Acc-5↑"), ("f1_score", "F1↑")]

BASELINE_NOTE = {
    M.REGRESSION: "baseline: train mean for MAE/Corr, train majority class for Acc and F1",
    M.CLASSIFICATION: "baseline: the train split's majority class",
}


class ProfileMismatchError(ValueError):
    """A run is being applied to a cache made with another dataset, profile or recipe."""


def check_cache_matches(config: dict[str, Any], cache_dir: Path, info: CacheInfo | None = None) -> None:
    """Refuse a cache whose dataset, profile or weights differ from the run's; warn on another recipe.

    ``info``: the cache's manifest when the caller has read it already."""
    meta = (info or cache_info(cache_dir)).meta
    if meta.dataset != config["dataset"]:
        check_cross_corpus(config, meta, cache_dir)
    if meta.profile != config["profile"]:
        raise ProfileMismatchError(
            f"the run was trained on profile {config['profile']!r} but cache {cache_dir} is profile "
            f"{meta.profile!r}; use a cache extracted with the same profile (the run's own cache "
            f"is {config['cache']})"
        )
    if meta.recipe_hash != config["recipe_hash"]:
        run_meta = _run_cache_meta(config)  # reads the run cache's manifest
        known = run_meta is not None and run_meta.recipe_hash == config["recipe_hash"]  # still the run's extraction
        run_recipe = run_meta.recipe if known else {}
        changed = weight_changes(run_recipe, meta.recipe, ("in the run's cache", "in this one"))
        if changed:
            raise ProfileMismatchError(
                f"cache {cache_dir} was extracted with other weights than the run's cache {config['cache']} "
                f"was: "
                f"{'; '.join(changed)}; evaluate on a cache extracted with the run's weight files"
            )
        named = ((recipe_changes(run_recipe, meta.recipe) or ["the same settings, other feature streams"]) if known
                 else ["the run's cache is gone or re-extracted"])  # not every setting "absent" in the run's
        log.warning("cache %s was extracted with another recipe (hash %s) than the run's (%s): %s (run's cache -> "
                    "this one); numbers may not be comparable", cache_dir, meta.recipe_hash[:12],
                    config["recipe_hash"][:12], ", ".join(named))


def check_cross_corpus(config: dict[str, Any], meta: Any, cache_dir: Path) -> None:
    """A cache of another dataset is usable when its task and the run's feed streams (names, widths) match."""
    if meta.task != config["task"]:
        raise ProfileMismatchError(
            f"the run was trained on dataset {config['dataset']!r} ({config['task']}) but cache {cache_dir} is "
            f"{meta.dataset!r} ({meta.task}); cross-corpus evaluation needs the same task")
    run_meta = _run_cache_meta(config)
    run_specs = run_meta.specs if run_meta is not None else {}  # gone or damaged: the model checks the widths
    for name in [n for names in config["data"]["streams"].values() for n in names]:
        theirs = meta.specs.get(name)
        ours = run_specs.get(name)
        if theirs is None or (ours is not None and theirs.dim != ours.dim):
            raise ProfileMismatchError(
                f"cache {cache_dir} ({meta.dataset}) lacks stream {name!r} or has another width than the run's "
                f"cache; cross-corpus evaluation needs the run's streams {config['data']['streams']}")
    log.warning("cross-corpus evaluation: run trained on %s, evaluated on %s (cache %s); labels are read as "
                "the run's task and label range", config["dataset"], meta.dataset, cache_dir)


def _run_cache_meta(config: dict[str, Any]) -> CacheMeta | None:
    """The metadata of the run's own cache, where it can still be read (None: gone or damaged)."""
    try:
        meta, _ = read_cache_meta(config["cache"])
    except Exception:  # gone or damaged: nothing to compare with
        return None
    return meta


def load_run_model(paths: RunPaths, config: dict[str, Any], checkpoint: str, device: torch.device,
                   trust_code: bool = False, factory: Callable | None = None):
    """The run's model with the weights of ``checkpoints/<checkpoint>.pt``, and that checkpoint's epoch.

    The model comes from hcm's registry by the name the config records; an outside ``module:Name``
    is imported only with ``trust_code`` (see :mod:`hcm.training.model_source`). A caller that has
    checked the config and resolved its ``factory`` already passes it, and neither is done again."""
    if factory is None:
        check_run_config(config, paths.config)
        factory = model_factory(config["model_factory"], trust_code, paths.config)
    state = load_checkpoint(paths.checkpoints / f"{checkpoint}.pt", "cpu")
    model = make_model(ModelConfig.from_saved(config["model"]), factory)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), int(state["epoch"])


@dataclass
class RunOnSplit:
    """A run's checkpoint loaded and the split it is scored on: where evaluation and robustness start."""

    paths: RunPaths
    config: dict[str, Any]  # the run's config.json, checked
    cache: CacheInfo  # the evaluated cache (its manifest, read once)
    facts: DatasetFacts
    data: CacheDataset  # the split
    dist: Dist  # one process on the chosen device
    model: nn.Module
    epoch: int  # the checkpoint's
    loader_cfg: TrainConfig  # batch size and workers of the evaluation loader


def open_run(run_dir: str | Path, split: str, *, cache_dir: str | Path | None = None, checkpoint: str = "best",
             device: str = "auto", batch_size: int = 0, num_workers: int | None = None,
             trust_model_code: bool = False) -> RunOnSplit:
    """Check the run's config, resolve its model factory (outside code only with ``trust_model_code``,
    refused before anything else), check the cache (default: the run's own) against the run, open
    ``split`` and load ``checkpoint``. ``num_workers`` None: the run's own loader workers."""
    paths = RunPaths(Path(run_dir))
    config = check_run_config(read_json(paths.config, "run config"), paths.config)
    factory = model_factory(config["model_factory"], trust_model_code, paths.config)
    cache = cache_info(Path(cache_dir) if cache_dir is not None else Path(config["cache"]))
    check_cache_matches(config, cache.directory, cache)
    facts = DatasetFacts.from_dict(config["facts"])
    data = CacheDataset(cache, split, DataConfig(**config["data"]))
    d = Dist(0, 1, resolve_device(device))
    model, epoch = load_run_model(paths, config, checkpoint, d.device, factory=factory)
    cfg = TrainConfig(batch_size=batch_size or config["train"]["batch_size"],
                      num_workers=config["train"]["num_workers"] if num_workers is None else num_workers)
    return RunOnSplit(paths, config, cache, facts, data, d, model, epoch, cfg)


def evaluate_run(run_dir: str | Path, split: str = "test", *, cache_dir: str | Path | None = None,
                 checkpoint: str = "best", tsne: bool = False, device: str = "auto", batch_size: int = 0,
                 console: Console | None = None, trust_model_code: bool = False) -> dict[str, Any]:
    """Evaluate a run's checkpoint on ``split``; print the table, then write ``<run>/eval/<split>/``.

    The table is printed before any file is written, so a read-only run folder still shows the
    numbers; :class:`OutputWriteError` then lists the files that could not be written.
    Returns the content of ``metrics.json``.
    """
    run = open_run(run_dir, split, cache_dir=cache_dir, checkpoint=checkpoint, device=device,
                   batch_size=batch_size, trust_model_code=trust_model_code)
    paths, config, facts, data, epoch = run.paths, run.config, run.facts, run.data, run.epoch
    cache, manifest = run.cache.directory, run.cache.manifest
    preds = predict(run.model, eval_loader(data, run.loader_cfg, run.dist), run.dist, with_features=tsne)
    labels = data.labels[preds.index]
    train_labels = FeatureCache(cache, split="train", features=[], manifest=manifest).labels
    report = {
        "run": str(paths.root), "split": split, "cache": str(cache), "checkpoint": checkpoint, "epoch": epoch,
        "items": int(labels.size), "task": facts.task, "key_metric": config["key_metric"],
        "masked": masked_counts(cache, split, list(config["data"]["streams"]), manifest),
        "metrics": M.compute_metrics(facts.task, preds.scores, labels, facts.class_names, facts.metrics),
        "baseline": M.baseline_metrics(facts.task, train_labels, labels, facts.class_names, facts.metrics),
        "loss": preds.loss,
    }
    report["mmsa"] = M.mmsa_metrics(report["metrics"], facts.metrics) if facts.task == M.REGRESSION else {}
    report.update(report["mmsa"])  # top-level aliases: report["Has0_acc_2"] as in MMSA's result dicts
    console = console or Console()
    print_table(console, metrics_table(facts, [("HCMNet", report["metrics"]), ("baseline", report["baseline"])],
                                       title=f"{config['dataset']} {split} ({paths.root.name}, epoch {epoch})"))
    console.print(masked_note(report))
    failed = write_outputs(paths.eval_dir(split), report, data.ids, preds, labels, facts, tsne)
    if report["files"]:
        console.print("wrote:\n" + "\n".join(f"  {path}" for path in report["files"]), soft_wrap=True, highlight=False)
    if failed:
        raise OutputWriteError(f"the {split} metrics above were computed, but {len(failed)} file(s) could not be "
                               f"written: {'; '.join(failed)}. Make {paths.eval_dir(split)} writable (or copy the "
                               f"run folder somewhere writable) and evaluate again to keep them")
    return report


class OutputWriteError(TrainingError):
    """Evaluation finished but some of its files could not be written."""


def masked_counts(cache_dir: Path, split: str, modalities: Sequence[str],
                  manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """How many items of ``split`` had each modality masked (a missing or broken medium), and in all
    (``manifest``: the cache's, when read already)."""
    per_modality = dict.fromkeys(modalities, 0)
    items = 0
    with FeatureCache(cache_dir, split=split, features=[], manifest=manifest) as cache:
        for index in range(len(cache)):
            masks = cache[index].masks  # (features=[]: no feature data is read)
            masked = [m for m in modalities if not masks.get(m, True)]
            items += bool(masked)
            for modality in masked:
                per_modality[modality] += 1
    return {"items": items, "per_modality": per_modality}


def masked_note(report: dict[str, Any]) -> str:
    masked = report["masked"]
    if not masked["items"]:
        return f"No {report['split']} item had a masked modality; the metrics cover all {report['items']} items."
    detail = ", ".join(f"{m} {n}" for m, n in masked["per_modality"].items() if n)
    return (f"{masked['items']} of {report['items']} {report['split']} items had a masked modality ({detail}); "
            f"they are scored with what they have, and the metrics cover all {report['items']} items.")


def write_outputs(out: Path, report: dict[str, Any], ids: Sequence[str], preds: Predictions, labels: np.ndarray,
                  facts: DatasetFacts, tsne: bool) -> list[str]:
    """Write ``metrics.json``, ``predictions.csv`` and the plots; return what could not be written, and why."""
    where = f"{Path(report.get('run', out)).name} {report.get('split', out.name)}"  # run and split, for plot titles
    writes = [(out / "predictions.csv", lambda p: write_predictions(p, ids, preds, labels, facts))]
    if facts.task == M.CLASSIFICATION:
        writes.append((out / "confusion.png",
                       lambda p: plot_confusion(p, labels, preds.scores.argmax(-1), facts.class_names, f1=True,
                                                 title="accuracy", where=where)))
    else:
        truth_classes, predicted_classes, names, title = score_classes(labels, preds.scores, facts.metrics)
        writes.append((out / "scatter.png", lambda p: plot_scatter(p, labels, preds.scores, facts, where)))
        writes.append((out / f"confusion_{title.lower().replace('-', '')}.png",
                       lambda p: plot_confusion(p, truth_classes, predicted_classes, names, title=title,
                                                where=where)))
    if tsne:
        writes.append((out / "tsne.png", lambda p: plot_tsne(p, preds.features, labels, facts, where)))
    writes.append((out / "metrics.json", lambda p: write_json(p, report)))  # last: it lists what was written
    failed: list[str] = []
    report["files"] = [str(path) for path, _ in writes]  # metrics.json lists itself
    for path, write in writes:
        try:
            if write(path) is False:  # nothing to plot (logged)
                report["files"].remove(str(path))
        except OSError as error:
            failed.append(f"{path} ({error.strerror or error})")
            report["files"].remove(str(path))
    return failed


def write_predictions(path: Path, ids: Sequence[str], preds: Predictions, labels: np.ndarray,
                      facts: DatasetFacts) -> None:
    """One row per item: id, label, prediction (+ class probabilities for classification)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if facts.task == M.REGRESSION:
        writer.writerow(["id", "label", "prediction"])
        for i, label, score in zip(preds.index, labels, preds.scores):
            writer.writerow([ids[i], f"{label:.6g}", f"{score:.6g}"])
    else:
        probs = torch.softmax(torch.from_numpy(preds.scores), dim=-1).numpy()  # (N, C)
        writer.writerow(["id", "label", "prediction", *[f"p_{name}" for name in facts.class_names]])
        for i, label, row in zip(preds.index, labels, probs):
            names = facts.class_names
            writer.writerow([ids[i], names[int(label)], names[int(row.argmax())], *[f"{p:.6f}" for p in row]])
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_classes(truth: np.ndarray, scores: np.ndarray,
                  metric_set: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Regression scores as the classes of the field's multi-class accuracy: Acc-7 (clip to [-3, 3],
    round; MOSEI/MOSI) or, for CH-SIMS, Acc-5 (MMSA's boundaries). Returns truth and predicted class
    indices, the class names and the accuracy's name."""
    if metric_set == M.SIMS:
        names = ["neg", "weak neg", "neutral", "weak pos", "pos"]
        return (M.sims_classes(np.clip(truth, -1, 1), 5), M.sims_classes(np.clip(scores, -1, 1), 5), names,
                "Acc-5")
    return _acc7_class(truth), _acc7_class(scores), [str(k) for k in range(-3, 4)], "Acc-7"


def _acc7_class(values: np.ndarray) -> np.ndarray:
    """Scores -> Acc-7 class index: clip to [-3, 3], round (halves to even, as ``acc7``), -3..3 -> 0..6."""
    return (np.round(np.clip(values, -3, 3)) + 3).astype(int)


def plot_confusion(path: Path, truth: np.ndarray, predicted: np.ndarray, class_names: Sequence[str],
                   f1: bool = False, title: str = "accuracy", where: str = "") -> None:
    """Confusion matrix as a PNG: counts beside the row-normalised matrix (each true class sums to 1),
    each with a colour bar; ``f1``: each true class labelled with its F1; ``where``: run and split."""
    from sklearn.metrics import ConfusionMatrixDisplay, f1_score

    labels = list(range(len(class_names)))
    shown = list(class_names)
    if f1:
        scores = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
        shown = [f"{name}\nF1 {score:.2f}" for name, score in zip(class_names, scores)]
    plt = _pyplot()
    side = 1.1 * len(class_names) + 2
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    accuracy = float(np.mean(np.asarray(truth) == np.asarray(predicted))) if len(truth) else math.nan
    for ax, normalize, kind in ((axes[0], None, "counts"), (axes[1], "true", "normalised over each true class")):
        ConfusionMatrixDisplay.from_predictions(truth, predicted, labels=labels, display_labels=shown, ax=ax,
                                                colorbar=True, xticks_rotation=45, normalize=normalize,
                                                values_format=None if normalize is None else ".2f")
        ax.set_xticklabels(class_names, rotation=45, ha="right")  # the F1 belongs to the true class (rows)
        ax.set_title(f"{where}: {title} {accuracy * 100:.1f}%\nconfusion matrix, {kind}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_scatter(path: Path, truth: np.ndarray, scores: np.ndarray, facts: DatasetFacts, where: str = "") -> None:
    """Predicted against true score, the diagonal, and the Acc-2 boundary (0) on both axes: points in
    the two off-diagonal quadrants are the Acc-2 errors."""
    low, high = facts.label_range
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(truth, scores, s=10, alpha=0.6)
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="prediction = truth")
    ax.axvline(0, color="tab:red", linestyle="--", linewidth=1, label="Acc-2 boundary (0)")
    ax.axhline(0, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlim(low, high)
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.legend(fontsize=7, loc="upper left")
    mae = float(np.mean(np.abs(np.asarray(scores) - np.asarray(truth)))) if len(truth) else math.nan
    ax.set_title(f"{where}: predicted against true score, MAE {mae:.3f}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_tsne(path: Path, features: np.ndarray | None, labels: np.ndarray, facts: DatasetFacts,
              where: str = "") -> bool:
    """2-D t-SNE of the model's latent features, coloured by label; False (logged) when there is
    nothing to plot. sklearn's t-SNE with perplexity (n - 1) / 3 kept within [1, 30] (it must stay
    below the n items), a PCA start and seed 0: the same features give the same picture."""
    from sklearn.manifold import TSNE

    if features is None or len(features) < 3:
        log.warning("t-SNE needs at least 3 items with features; %s not written", path)
        return False
    perplexity = float(min(30, max(1, (len(features) - 1) / 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(features)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    if facts.task == M.CLASSIFICATION:
        for k, name in enumerate(facts.class_names):
            chosen = labels == k
            ax.scatter(points[chosen, 0], points[chosen, 1], s=8, label=name)
        ax.legend(fontsize=7)
    else:
        shown = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=8)
        fig.colorbar(shown, ax=ax, label="label")
    ax.set_title(f"{where}: t-SNE of the latent features, coloured by label", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return True


def metric_columns(facts: DatasetFacts, class_header: Callable[[str], str] = str.capitalize) -> list[tuple[str, str]]:
    """(metric, header) of the metrics table: the paper's Table 3 columns for regression (MMSA's
    CH-SIMS set for ``sims``), Table 2's for classification (per-class F1 headed
    ``class_header(class)``, accuracy, weighted F1)."""
    if facts.metrics == M.SIMS:
        return list(SIMS_COLUMNS)
    if facts.task == M.REGRESSION:
        return list(REGRESSION_COLUMNS)
    return [(f"f1_{c}", class_header(c)) for c in facts.class_names] + [("accuracy", "Acc↑"), ("weighted_f1", "w-F1↑")]


def metrics_table(facts: DatasetFacts, rows: Sequence[tuple[str, dict[str, Any]]], title: str = "") -> Table:
    """A rich table shaped like the paper's Table 3 (regression) or Table 2 (classification)."""
    columns = metric_columns(facts)
    table = Table(title=title or None, caption=f"{UNITS}; {BASELINE_NOTE[facts.task]}")
    table.add_column("Method", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right")
    for name, values in rows:
        table.add_row(name, *[metric_cell(key, values.get(key)) for key, _ in columns])
    return table


def summarize_seed_runs(run_dirs: Sequence[Path], split: str, out: Path, console: Console | None = None,
                        **kwargs: Any) -> dict[str, Any]:
    """Evaluate several runs (one per seed), write ``out`` with mean ± std, print the table."""
    reports = [evaluate_run(run, split, console=Console(quiet=True), **kwargs) for run in run_dirs]
    config = read_json(RunPaths(Path(run_dirs[0])).config, "run config")
    summary = {
        "split": split, "runs": [str(r) for r in run_dirs],
        "seeds": [read_json(RunPaths(Path(r)).config, "run config")["train"]["seed"] for r in run_dirs],
        "metrics": M.summarize_seeds([r["metrics"] for r in reports]),
        "baseline": reports[0]["baseline"], "per_run": [r["metrics"] for r in reports],
    }
    write_json(out, summary)
    facts = DatasetFacts.from_dict(config["facts"])
    print_table(console or Console(), metrics_table(
        facts, [(f"HCMNet ({len(reports)} seeds)", summary["metrics"]), ("baseline", summary["baseline"])],
        title=f"{config['dataset']} {split}: mean ± std over seeds {summary['seeds']}",
    ))
    return summary
