"""What ``hcm tune`` shows and draws: the live trial count, the confirmation ranking, the
``--status`` table, Optuna's history and importance plots, and the grid's sensitivity plot
(the paper's Figure 3). Tables are Markdown split to fit 80 columns (``hcm.apps.markdown``)."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hcm.apps.markdown import markdown_table
from hcm.core.files import atomic_write
from hcm.training.tuning import best_first, counts, trial_seconds

log = logging.getLogger(__name__)


class TrialProgress:
    """A progress line of finished trials, read from the study while the workers run."""

    def __init__(self, study: optuna.Study, total: int, enabled: bool) -> None:
        from hcm.core.progress import progress_bar

        self.study, self.total = study, total
        self.bar = progress_bar(enabled, "{task.fields[best]}")
        self.thread = None
        self.done = False

    def __enter__(self) -> "TrialProgress":
        import threading

        self.bar.__enter__()
        self.task = self.bar.add_task("trials", total=self.total, best="")
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        import time

        while not self.done:
            try:
                self._update()
            except Exception:  # noqa: BLE001 - the display must never stop the work
                pass
            time.sleep(2)

    def _update(self) -> None:
        count = counts(self.study)
        best = best_first(self.study, 1)
        self.bar.update(self.task, completed=count[TrialState.COMPLETE] + count[TrialState.PRUNED],
                        best=f"best {best[0].value:.4f} (trial {best[0].number})" if best else "")

    def __exit__(self, *exc: object) -> None:
        self.done = True
        if self.thread is not None:
            self.thread.join(timeout=5)
        try:
            self._update()
        except Exception:  # noqa: BLE001
            pass
        self.bar.__exit__(*exc)


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def confirm_markdown(report: dict[str, Any]) -> str:
    """The ranking: trial, its search value, mean ± std and 95 % CI over the seeds, then its values."""
    seeds = report["confirm_seeds"]
    lines = [f"# hcm tune {report['study']}: the top trials over seeds {seeds}", "",
             f"{report['metric']} ({report['direction']}), mean ± sample std and 95 % t-interval over the seeds.", ""]
    headers = ["rank", "trial", "search", "mean ± std", "95 % CI"]
    rows = []
    for rank, r in enumerate(report["ranked"], start=1):
        ci = "-" if not math.isfinite(r["low"]) else f"[{r['low']:.4f}, {r['high']:.4f}]"
        rows.append([str(rank), str(r["trial"]), f"{r['search_value']:.4f}", f"{r['mean']:.4f} ± {r['std']:.4f}", ci])
    lines.append(markdown_table(headers, rows))
    names = sorted({name for r in report["ranked"] for name in r["params"]})
    lines.append(markdown_table(["trial"] + names, [[str(r["trial"])] + [number(r["params"].get(n)) for n in names]
                                                    for r in report["ranked"]]))
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sensitivity(report: dict[str, Any], path: Path) -> None:
    """The metric against each grid setting's value, mean ± std over seeds, one line per
    combination of the other settings: valid (top row) and test (bottom row), as the paper's
    Figure 3 draws the numbers of GCN and PGF layers."""
    plt = _pyplot()
    names = list(report["grid"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.5 * len(names), 6.4), squeeze=False)
    for row, (split, mean, std) in enumerate((("valid", "mean", "std"), ("test", "test_mean", "test_std"))):
        for ax, name in zip(axes[row], names):
            others = [n for n in names if n != name]
            lines: dict[str, list[dict[str, Any]]] = {}
            for point in report["points"]:
                lines.setdefault(", ".join(f"{n}={point['params'][n]}" for n in others), []).append(point)
            for label, pts in lines.items():
                pts = sorted(pts, key=lambda p: p["params"][name])
                xs = [p["params"][name] for p in pts]
                ax.errorbar(xs, [p[mean] for p in pts], yerr=[p[std] for p in pts], marker="o", capsize=3,
                            label=label or None)
            values = report["grid"][name]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                ax.set_xticks(sorted(values))
            ax.set_xlabel(name)
            ax.set_ylabel(f"{split} {report['metric']}")
            ax.set_title(f"{split} {report['metric']} vs {name}")
            if others:
                ax.legend(fontsize=7)
    fig.suptitle(f"study {report['study']}: mean ± std over seeds {report['seeds']}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def save_plots(study: optuna.Study, metric: str, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances (matplotlib); a plot that cannot
    be drawn (too few complete trials, a constant parameter) is skipped with a logged reason."""
    plt = _pyplot()
    from optuna.visualization import matplotlib as oplt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("history", oplt.plot_optimization_history), ("importance", oplt.plot_param_importances)):
        path = folder / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            log.warning("no %s plot for study %s: %s", name, study.study_name, error)
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.suptitle(f"study {study.study_name}: {metric} ({name})", fontsize=9)
        fig.tight_layout()
        atomic_write(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        written.append(path)
    return written


def status_rows(study: optuna.Study) -> tuple[list[str], list[list[str]]]:
    """Trial, state, value, seconds, then one column per parameter."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    headers = ["trial", "state", "value", "seconds"] + names
    rows = []
    for t in trials:
        seconds = trial_seconds(t)
        rows.append([str(t.number), t.state.name.lower(), number(t.value) if t.value is not None else "-",
                     f"{seconds:.0f}" if seconds is not None else "-"] + [number(t.params.get(n, "-")) for n in names])
    return headers, rows
