"""The training-curve figure of ``hcm report``: loss and the validation key metric per epoch, the best
epoch marked; one run or several overlaid (e.g. HCMNet against w/o CDC, the paper's Figure 4 pair)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hcm.core.files import atomic_write


def plot_curves(path: Path, reports: Sequence[Any], key: str) -> None:
    """Left: train and valid loss; right: valid ``key``; a star and a dotted line at each run's best epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    several = len(reports) > 1
    for k, report in enumerate(reports):
        colour = f"C{k}"
        epochs = [e["epoch"] for e in report.epochs]
        label = report.name if several else ""
        if not several:
            loss_ax.plot(epochs, [e.get("train_loss") for e in report.epochs], color="C0", label="train loss")
        loss_ax.plot(epochs, [e.get("valid_loss") for e in report.epochs], color=colour if several else "C1",
                     label=f"{label} valid loss".strip())
        values = [e.get(f"valid_{key}") for e in report.epochs]
        metric_ax.plot(epochs, values, color=colour, marker="o", markersize=3, label=label or f"valid {key}")
        if report.best_epoch is not None:
            best = next(e for e in report.epochs if int(e["epoch"]) == report.best_epoch)
            for ax in (loss_ax, metric_ax):
                ax.axvline(report.best_epoch, color=colour, linestyle=":", linewidth=1)
            metric_ax.scatter([report.best_epoch], [best[f"valid_{key}"]], marker="*", s=120, color=colour,
                              zorder=3, label=f"best epoch {report.best_epoch}")
    names = "several runs" if several else reports[0].name
    loss_ax.set_title(f"{names}: train/valid loss per epoch", fontsize=9)
    metric_ax.set_title(f"{names}: valid {key} per epoch (star: best epoch)", fontsize=9)
    for ax, ylabel in ((loss_ax, "loss"), (metric_ax, f"valid {key}")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)
