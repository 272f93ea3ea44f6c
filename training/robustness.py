"""How a trained run holds up when modalities are missing or noisy (``hcm evaluate --missing/--noise``).

Every condition re-predicts the split with its batches changed on the way into the network:

- missing ``m``: ``m``'s mask all False and its rows zero (text also loses its dependency edges),
  which is exactly how an item whose medium was missing enters the network (``hcm.training.data``:
  an absent modality has zero real nodes; its [CLS] row stands in for it). Pairs mask both.
- noise at level ``s``: Gaussian noise ``N(0, (s * sigma_j)^2)`` added to every real row of each
  feature column ``j`` of every modality, where ``sigma_j`` is that column's spread (standard
  deviation) over the real rows of the evaluated split. The columns are the cached streams'
  dimensions as the model reads them (standardised with the train split's statistics when the
  run standardises), so ``s`` is in units of each stream's own spread: ``s = 1`` adds as much
  noise as there is signal variation. The noise is drawn from a fixed seed, so a table repeats.

``robustness_run`` scores the clean split and every condition with the run's metrics, prints a
table, and writes ``<run>/eval/<split>/robustness.json``, ``robustness.csv`` and
``robustness.png`` (the key metric against the noise level, and per missing modality set).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from hcm.core.files import atomic_write, write_csv, write_json
from hcm.core.tables import UNITS, metric_cell, print_table
from hcm.model.config import ModelConfig
from hcm.training import metrics as M
from hcm.training.evaluate import _pyplot, metric_columns, open_run
from hcm.training.inference import eval_loader, predict
from hcm.training.settings import DatasetFacts

Batch = dict[str, torch.Tensor]
NOISE_SEED = 0


@dataclass(frozen=True)
class Condition:
    """One way of degrading the input: modalities masked and/or a noise level."""

    missing: tuple[str, ...] = ()
    noise: float = 0.0

    @property
    def name(self) -> str:
        if not self.missing and not self.noise:
            return "clean"
        parts = (["missing " + "+".join(self.missing)] if self.missing else []) + (
            [f"noise {self.noise:g}"] if self.noise else [])
        return ", ".join(parts)


def missing_sets(spec: Sequence[str], modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """``["text", "video+audio"]`` or ``["all"]`` (every single modality and every pair) -> sets.

    Raises ValueError naming a modality the run does not use, or a set that masks all of them."""
    if list(spec) == ["all"]:
        sets = [(m,) for m in modalities] + list(itertools.combinations(modalities, 2))
        return [s for s in sets if len(s) < len(modalities)]
    sets = []
    for entry in spec:
        names = tuple(dict.fromkeys(part.strip() for part in entry.split("+") if part.strip()))
        unknown = [m for m in names if m not in modalities]
        if unknown or not names:
            raise ValueError(f"--missing {entry!r}: the run uses the modalities {list(modalities)}; name one or "
                             f"two of them joined by '+' (e.g. text, video+audio), or 'all'")
        if len(names) == len(modalities):
            raise ValueError(f"--missing {entry!r} masks every modality the run uses; nothing would be left to "
                             f"predict from")
        sets.append(tuple(m for m in modalities if m in names))
    return sets


def mask_modalities(batch: Batch, names: Iterable[str]) -> Batch:
    """A copy of ``batch`` with the modalities ``names`` absent, as extraction marks a missing medium."""
    out = dict(batch)
    for name in names:
        out[name] = torch.zeros_like(batch[name])
        out[f"{name}_mask"] = torch.zeros_like(batch[f"{name}_mask"])
        if name == "text" and "text_adj" in batch:
            out["text_adj"] = torch.zeros_like(batch["text_adj"])
    return out


def add_noise(batch: Batch, spread: dict[str, torch.Tensor], level: float, generator: torch.Generator) -> Batch:
    """A copy of ``batch`` with ``N(0, (level * spread)^2)`` noise on the real rows of each modality."""
    out = dict(batch)
    for name, sigma in spread.items():
        x, mask = batch[name], batch[f"{name}_mask"]  # (B, N, D), (B, N)
        noise = torch.randn(x.shape, generator=generator) * (level * sigma)  # (B, N, D)
        out[name] = x + noise * mask.unsqueeze(-1)
    return out


class ColumnSpread:
    """Running sums, per modality, of each feature column over the real rows of the batches added."""

    def __init__(self, modalities: Sequence[str]) -> None:
        self.sums: dict[str, Any] = {m: [0.0, 0.0, 0] for m in modalities}

    def add(self, batch: Batch) -> Batch:
        """Count ``batch``'s real rows; returns it unchanged."""
        for m, total in self.sums.items():
            rows = batch[m][batch[f"{m}_mask"]].double()  # (n, D)
            total[0] = total[0] + rows.sum(0)
            total[1] = total[1] + (rows * rows).sum(0)
            total[2] += rows.shape[0]
        return batch

    def spread(self) -> dict[str, torch.Tensor]:
        """Per modality with real rows, the standard deviation of each feature column, (D,)."""
        spread = {}
        for m, (s, sq, n) in self.sums.items():
            if n:
                mean = s / n
                spread[m] = (sq / n - mean * mean).clamp_min(0).sqrt().float()
        return spread


def column_spread(batches: Iterable[Batch], modalities: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per modality, the standard deviation of each feature column over the real rows, (D,)."""
    sums = ColumnSpread(modalities)
    for batch in batches:
        sums.add(batch)
    return sums.spread()


class TransformedLoader:
    """Iterate a loader with every batch passed through ``change(batch, k)`` (k: the batch's position)."""

    def __init__(self, loader: Iterable[Batch], change: Callable[[Batch, int], Batch]) -> None:
        self.loader, self.change = loader, change

    def __iter__(self) -> Iterator[Batch]:
        for k, batch in enumerate(self.loader):
            yield self.change(batch, k)


def condition_change(condition: Condition, spread: dict[str, torch.Tensor]) -> Callable[[Batch, int], Batch]:
    """The batch change of one condition; the noise of batch k is drawn from seed (NOISE_SEED, k)."""
    def change(batch: Batch, k: int) -> Batch:
        if condition.noise:
            generator = torch.Generator().manual_seed(NOISE_SEED * 1_000_003 + k)
            batch = add_noise(batch, spread, condition.noise, generator)
        return mask_modalities(batch, condition.missing) if condition.missing else batch
    return change


def conditions_for(missing: Sequence[tuple[str, ...]], noise: Sequence[float]) -> list[Condition]:
    """The clean reference first, then each missing set, then each noise level (0 left out)."""
    return [Condition()] + [Condition(missing=s) for s in missing] + [Condition(noise=float(s)) for s in noise if s]


def robustness_run(run_dir: str | Path, split: str = "test", missing: Sequence[str] = (),
                   noise: Sequence[float] = (), *, cache_dir: str | Path | None = None, device: str = "auto",
                   batch_size: int = 0, console: Console | None = None,
                   trust_model_code: bool = False) -> dict[str, Any]:
    """Score ``split`` clean and under every condition; print the table and write robustness.*.

    Args:
        missing: modality sets as ``"text"``, ``"video+audio"``, or ``["all"]``.
        noise: noise levels in units of each feature column's spread.
    Returns the content of ``robustness.json``.
    """
    run = open_run(run_dir, split, cache_dir=cache_dir, device=device, batch_size=batch_size, num_workers=0,
                   trust_model_code=trust_model_code)
    paths, config, facts, data, d = run.paths, run.config, run.facts, run.data, run.dist
    modalities = ModelConfig.from_saved(config["model"]).modality_names
    clean, *degraded = conditions_for(missing_sets(missing, modalities) if missing else [], noise)
    loader = eval_loader(data, run.loader_cfg, d)
    labels = None

    def score(condition: Condition, change: Callable[[Batch, int], Batch]) -> dict[str, Any]:
        nonlocal labels
        preds = predict(run.model, TransformedLoader(loader, change), d)
        labels = data.labels[preds.index] if labels is None else labels
        metrics = M.compute_metrics(facts.task, preds.scores, labels, facts.class_names, facts.metrics)
        return {"condition": condition.name, "missing": list(condition.missing), "noise": condition.noise,
                "metrics": metrics}

    sums = ColumnSpread(modalities)  # the clean pass also measures the columns' spread, for the noise
    noisy = any(c.noise for c in degraded)
    rows = [score(clean, (lambda batch, _: sums.add(batch)) if noisy else condition_change(clean, {}))]
    spread = sums.spread() if noisy else {}
    rows += [score(condition, condition_change(condition, spread)) for condition in degraded]
    report = {"run": str(paths.root), "split": split, "cache": str(run.cache.directory), "epoch": run.epoch,
              "items": len(data), "key_metric": config["key_metric"], "noise_seed": NOISE_SEED, "rows": rows,
              "noise_scale": "each feature column's standard deviation over the split's real rows"}
    console = console or Console()
    print_table(console, robustness_table(report, facts))
    write_robustness(paths.eval_dir(split), report, paths.root.name)
    console.print(f"wrote {paths.eval_dir(split) / 'robustness.json'}, robustness.csv, robustness.png")
    return report


def robustness_table(report: dict[str, Any], facts: DatasetFacts) -> Table:
    """Condition per row, the metrics of ``hcm evaluate``'s table per column."""
    columns = metric_columns(facts)
    table = Table(title=f"{Path(report['run']).name} {report['split']}: robustness",
                  caption=f"{UNITS}; noise in units of each feature column's spread")
    table.add_column("condition", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right")
    for row in report["rows"]:
        table.add_row(row["condition"], *[metric_cell(name, row["metrics"].get(name)) for name, _ in columns])
    return table


def write_robustness(out: Path, report: dict[str, Any], run_name: str) -> None:
    """robustness.json (everything), robustness.csv (one row per condition), robustness.png."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "robustness.json", report)
    write_csv(out / "robustness.csv", [{"condition": r["condition"], "missing": "+".join(r["missing"]),
                                        "noise": r["noise"], **r["metrics"]} for r in report["rows"]])
    plot_robustness(out / "robustness.png", report, run_name)


def plot_robustness(path: Path, report: dict[str, Any], run_name: str) -> None:
    """The key metric against the noise level (clean at 0) and, beside it, per missing modality set."""
    plt = _pyplot()
    key = report["key_metric"]
    rows = report["rows"]
    curve = [r for r in rows if not r["missing"]]
    dropped = [r for r in rows if r["missing"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    axes[0].plot([r["noise"] for r in curve], [r["metrics"][key] for r in curve], marker="o")
    axes[0].set_xlabel("noise level (x each feature column's spread)")
    axes[0].set_ylabel(key)
    axes[0].set_title(f"{run_name} {report['split']}: {key} under feature noise", fontsize=9)
    axes[0].grid(alpha=0.3)
    names = ["clean"] + [r["condition"].replace("missing ", "no ") for r in dropped]
    values = [rows[0]["metrics"][key]] + [r["metrics"][key] for r in dropped]
    axes[1].bar(range(len(values)), values, color=["tab:green"] + ["tab:orange"] * len(dropped))
    axes[1].set_xticks(range(len(values)), names, rotation=30, ha="right", fontsize=8)
    axes[1].set_ylabel(key)
    axes[1].set_title(f"{run_name} {report['split']}: {key} with modalities missing", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
