"""The picture of one ``hcm explain`` document: prediction and contributions, transport plans,
atomic-level attention and the three graphs, each panel titled with what it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _heatmap(fig, ax, values: list, rows: list[str], cols: list[str], title: str, cmap: str = "viridis",
             ylabel: str = "", xlabel: str = "", vmin: float | None = None, vmax: float | None = None) -> None:
    matrix = np.asarray(values, dtype=float)
    if matrix.size == 0:
        ax.set_title(title + "\n(no rows)", fontsize=8)
        ax.axis("off")
        return
    shown = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=60, ha="right")
    ax.set_title(title, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.set_xlabel(xlabel, fontsize=7)


def _summary(ax, doc: dict[str, Any]) -> None:
    """Prediction, label and the contribution bars."""
    pred = doc["prediction"]
    if "score" in pred:
        shown = f"{pred['score']:+.3f}"
    else:
        shown = f"{pred['class']} ({max(pred['probabilities'].values()):.0%})"
    label = doc.get("label")
    label_text = "" if label is None else (f"label {label:+.2f}" if isinstance(label, float) else f"label {label}")
    contributions = doc["contributions"]
    names = list(contributions)
    diffs = [contributions[m]["difference"] for m in names]
    ax.barh(range(len(names)), diffs, color=["tab:blue" if v >= 0 else "tab:red" for v in diffs])
    ax.set_yticks(range(len(names)), [f"{m}" for m in names], fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    unit = "score" if "score" in pred else f"p({pred['class']})"
    ax.set_xlabel(f"full minus {unit} with the modality masked", fontsize=7)
    masked = [m for m, ok in doc["modalities"].items() if not ok]
    ax.set_title(f"prediction {shown}   {label_text}" + (f"   masked: {', '.join(masked)}" if masked else "")
                 + "\ncontribution of each modality", fontsize=8)


def _frames(ax, thumbnails: np.ndarray | None, doc: dict[str, Any]) -> None:
    """The sampled frames side by side with their timestamps (the video rows of the plans)."""
    times = (doc.get("media") or {}).get("frame_times") or []
    if thumbnails is None or len(thumbnails) == 0:
        ax.set_title("sampled frames: the clip is not at hand (rows are shown by index)", fontsize=8)
        ax.axis("off")
        return
    ax.imshow(np.concatenate(list(thumbnails), axis=1))  # (h, T * w, 3)
    width = thumbnails.shape[2]
    ax.set_xticks([width * (i + 0.5) for i in range(len(thumbnails))],
                  [f"f{i}\n{t:.1f}s" for i, t in enumerate(times)] or None, fontsize=6)
    ax.set_yticks([])
    ax.set_title(f"the {len(thumbnails)} sampled frames (video rows f) at their times", fontsize=8)


def plot_explanation(doc: dict[str, Any], path: Path, thumbnails: np.ndarray | None = None) -> None:
    """Write the 3 x 3 panel figure of one explained item to ``path`` (PNG); ids, words and transcripts
    are shown as written (a ``$`` in a MOSEI id is no mathtext). ``thumbnails``: the sampled frames
    (T, h, w, 3), drawn with their times when the clip was at hand."""
    plt = _pyplot()
    with plt.rc_context({"text.parse_math": False}):
        _draw(plt, doc, path, thumbnails)


def _draw(plt, doc: dict[str, Any], path: Path, thumbnails: np.ndarray | None) -> None:
    fig, axes = plt.subplots(3, 3, figsize=(16, 13))
    run = Path(doc["run"]).name
    text = (doc.get("text") or "").strip()
    fig.suptitle(f"{run} (epoch {doc['epoch']}), {doc['split'] or 'clip'} item {doc['id']}\n\"{text[:110]}\"",
                 fontsize=10)
    _summary(axes[0, 0], doc)
    for ax, name in zip(axes[0, 1:], ("video", "audio")):
        plan = doc["plans"].get(name)
        if plan is None:
            ax.set_title(f"text-{name} plan: not computed by this variant", fontsize=8)
            ax.axis("off")
            continue
        _heatmap(fig, ax, plan["plan"], plan["rows"], plan["cols"],
                 f"composition-level transport plan H ({name} -> text, Eq. 11)\n"
                 f"rows sum to the {name} marginal, columns to the text marginal", cmap="magma",
                 ylabel=name, xlabel="text")
    for ax, name in zip(axes[1, :2], ("video", "audio")):
        attention = doc["attention"].get(name)
        if attention is None:
            ax.set_title(f"{name} -> text attention: not computed by this variant", fontsize=8)
            ax.axis("off")
            continue
        _heatmap(fig, ax, attention["weights"], attention["rows"], attention["cols"],
                 f"atomic-level attention (Eq. 4), {name} rows over text\nmean of {attention['heads']} heads",
                 cmap="Blues", ylabel=name, xlabel="text", vmin=0)
    graphs = doc["graphs"]
    panels = [(axes[1, 2], "text", "dependency graph over the words", "Greys"),
              (axes[2, 0], "video", "video similarity graph (Eq. 8)", "coolwarm"),
              (axes[2, 1], "audio", "audio line graph", "Greys")]
    for ax, name, title, cmap in panels:
        graph = graphs.get(name)
        if graph is None:
            ax.set_title(f"{title}: not computed by this variant", fontsize=8)
            ax.axis("off")
            continue
        if name == "video" and "similarity" in graph:
            _heatmap(fig, ax, graph["similarity"], graph["labels"], graph["labels"],
                     f"{title}: cosine similarity; edges where > eta = {graph['eta']:g} (dots)", cmap=cmap,
                     vmin=-1, vmax=1)
            kept = np.argwhere(np.asarray(graph["adjacency"]) > 0)
            if kept.size:
                ax.scatter(kept[:, 1], kept[:, 0], s=10, color="black", marker="o")
        else:
            _heatmap(fig, ax, graph["adjacency"], graph["labels"], graph["labels"], f"{title} (1 = edge)",
                     cmap=cmap, vmin=0, vmax=1)
    _frames(axes[2, 2], thumbnails, doc)
    fig.text(0.5, 0.005, "Rows of text: tokens of the current utterance, named by their word. Video rows: "
             "sampled frames (f) at their time, audio rows: segments (s) with their span, in time order; "
             "v/a: nodes resampled to the text's count (paper reading), ~ the share of the clip each covers. "
             "Plans and graphs are over the real rows; [CLS] stands in for a missing modality.",
             fontsize=7, ha="center", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, format="png", dpi=70)
    plt.close(fig)
