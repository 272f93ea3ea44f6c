"""``hcm explain``: look inside a run's prediction for single items (the paper's Figure 5 case study).

For each item (cached items of a split chosen by id or as the worst errors, or a new clip
extracted exactly as ``hcm predict`` extracts it) one forward pass of the run's best checkpoint
is recorded (``hcm.model.inspect.record_details``: hooks that only read) and written as
``<id>.json`` (the numbers) and ``<id>.png`` (the picture):

- the prediction and, for cached items, the label;
- each modality's contribution: the prediction with that modality masked exactly as a missing
  medium is masked in training and extraction (``hcm.training.robustness.mask_modalities``), and
  the difference (full minus masked; for classes, in the probability of the predicted class);
- the composition-level transport plans text-video and text-audio (Eq. 11) over the real rows,
  with the marginals they were solved for (rows sum to ``row_marginal``, columns to
  ``col_marginal``, up to Sinkhorn's stopping error, given as ``marginal_error``);
- the three graphs the GCNs saw: the dependency graph over the words, the video cosine
  similarity with the threshold ``eta`` and the edges kept, the audio line graph;
- the atomic-level attention (Eq. 4): each video/audio row's weights over the text rows,
  averaged over the heads.

Text rows are tokens of the current utterance; a row is labelled with the word it belongs to
(the cache's ``token_word``, the index of a spaCy word) and that word as found by splitting the
transcript into words and punctuation, which matches spaCy's words in most sentences; without
``token_word`` (imported features) rows are labelled ``t<i>``. Video rows are the sampled frames
``f<i>``, audio rows the segments ``s<i>`` in time order; under the paper reading's common node
count they are the resampled nodes ``v<i>``/``a<i>`` (``hcm.model.nodes``). When the clip is at
hand (given, or found again in the corpus the cache was read from: ``hcm.pipeline.sources``) rows
also carry their time and the picture shows the sampled frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hcm.apps.predict import PredictError, Predictor, RunModel, items_batch
from hcm.cache import FeatureCache, Item
from hcm.core.errors import EXIT_USAGE, UsageError, report_errors
from hcm.core.files import atomic_write, write_json
from hcm.core.tables import print_table
from hcm.core.workspace import Workspace
from hcm.model.inspect import ForwardDetails, record_details
from hcm.pipeline.media import MediaRef
from hcm.pipeline.profiles import Sampling
from hcm.pipeline.sources import RowMedia, find_utterance, row_media
from hcm.training.data import CacheDataset, DataConfig, modality_nodes
from hcm.training.distributed import Dist
from hcm.training.inference import eval_loader, predict
from hcm.training.robustness import mask_modalities
from hcm.training.runs import find_latest_run
from hcm.training.settings import TrainConfig

WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
ROW_PREFIX = {"video": "f", "audio": "s"}


@dataclass
class ExplainRequest:
    """What ``hcm explain`` asks for: cached items (``ids`` or ``worst``) or one ``clip``."""

    run: Path | None = None
    split: str = "test"
    ids: list[str] | None = None
    worst: int | None = None
    clip: Path | None = None
    text: str | None = None
    out: Path | None = None
    device: str = "auto"
    features: Path | None = None  # another cache of the run's profile (cached items)


# --------------------------------------------------------------------------- one item


def row_labels(item: Item, data_cfg: DataConfig, modality: str, count: int, common: bool) -> list[str]:
    """Labels of the ``count`` real rows of ``modality`` as the network sees them (see module doc)."""
    if modality != "text":
        prefix = modality[0] if common else ROW_PREFIX.get(modality, modality[0])
        return [f"{prefix}{i}" for i in range(count)]
    _, rows, _ = modality_nodes("text", item.features, data_cfg)
    token_word = item.features.get("token_word")
    if token_word is None or np.asarray(token_word).shape[0] <= (rows.max() if rows.size else 0):
        return [f"t{i}" for i in range(count)]
    words = WORD.findall(item.text or "")
    labels = []
    for row in rows[:count]:
        w = int(np.asarray(token_word).reshape(-1)[row])
        labels.append(f"{words[w]}" if 0 <= w < len(words) else f"w{w}")
    return labels + [f"t{i}" for i in range(len(labels), count)]


def readout(prediction: torch.Tensor, classes: list[str] | None) -> dict[str, Any]:
    """One item's output as score, or class and probabilities."""
    if classes is None:
        return {"score": float(prediction.reshape(-1)[0])}
    probs = torch.softmax(prediction.reshape(-1), 0)
    best = int(probs.argmax())
    return {"class": classes[best], "probabilities": dict(zip(classes, map(float, probs)))}


def contribution(full: dict[str, Any], masked: dict[str, Any]) -> dict[str, Any]:
    """Full prediction minus the prediction without a modality (score, or the predicted class's probability)."""
    if "score" in full:
        return {"prediction_without": masked["score"], "difference": full["score"] - masked["score"]}
    name = full["class"]
    return {"prediction_without": masked["class"], "probability_without": masked["probabilities"][name],
            "difference": full["probabilities"][name] - masked["probabilities"][name]}


def support_slice(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> np.ndarray:
    return matrix[rows][:, cols].double().cpu().numpy()


def plan_record(details: ForwardDetails, name: str, labels: dict[str, list[str]]) -> dict[str, Any]:
    """Plan H_m over the real rows (support) of m and of the anchor, with its marginals."""
    anchor = details.anchor
    mu_m, mu_t = details.marginals[name][0], details.marginals[anchor][0]  # (1+N_m,), (1+N_t,)
    rows, cols = mu_m > 0, mu_t > 0
    plan = support_slice(details.plans[name][0], rows, cols)
    row_mu, col_mu = mu_m[rows].double().cpu().numpy(), mu_t[cols].double().cpu().numpy()
    error = max(np.abs(plan.sum(1) - row_mu).max(initial=0), np.abs(plan.sum(0) - col_mu).max(initial=0))
    return {"plan": plan.tolist(), "row_marginal": row_mu.tolist(), "col_marginal": col_mu.tolist(),
            "rows": support_labels(rows, labels[name]), "cols": support_labels(cols, labels[anchor]),
            "marginal_error": float(error),
            "mass_outside_support": float(details.plans[name][0].sum() - plan.sum())}


def support_labels(support: torch.Tensor, real: list[str]) -> list[str]:
    """Labels of the support rows: the real rows, or the [CLS] row standing in for a missing modality."""
    return ["[CLS]"] if bool(support[0]) else real[: int(support.sum())]


def graph_record(details: ForwardDetails, name: str, labels: list[str]) -> dict[str, Any]:
    """The adjacency over the real rows (and for video the similarity and eta)."""
    adj = details.adjacency[name][0]
    real = torch.zeros(adj.shape[0], dtype=torch.bool)
    real[1:1 + len(labels)] = True
    record = {"adjacency": support_slice(adj, real, real).tolist(), "labels": labels}
    if name == "video" and details.similarity is not None:
        record["similarity"] = support_slice(details.similarity[0], real, real).tolist()
        record["eta"] = details.eta
    return record


def attention_record(details: ForwardDetails, name: str, labels: dict[str, list[str]]) -> dict[str, Any]:
    """Head-mean attention of m's real rows over the anchor's [CLS] and real rows."""
    weights = details.attention[name][0].mean(0)  # (1+N_m, 1+N_t)
    anchor = details.anchor
    rows = torch.zeros(weights.shape[0], dtype=torch.bool)
    rows[1:1 + len(labels[name])] = True
    cols = torch.zeros(weights.shape[1], dtype=torch.bool)
    cols[:1 + len(labels[anchor])] = True
    return {"weights": support_slice(weights, rows, cols).tolist(), "rows": labels[name],
            "cols": ["[CLS]"] + labels[anchor], "heads": int(details.attention[name].shape[1])}


def timed_labels(labels: list[str], modality: str, media: RowMedia, common: bool) -> list[str]:
    """Row labels with when each row happens: a frame's timestamp, a segment's span; a node resampled
    onto the text's count (``common``) covers an equal share of the clip in time order (``~``)."""
    if common:
        share = media.duration / max(len(labels), 1)
        return [f"{label} ~{i * share:.1f}-{(i + 1) * share:.1f}s" for i, label in enumerate(labels)]
    if modality == "video" and len(media.frame_times) >= len(labels):
        return [f"{label} {media.frame_times[i]:.1f}s" for i, label in enumerate(labels)]
    if modality == "audio" and len(media.segment_times) >= len(labels):
        return [f"{label} {media.segment_times[i][0]:.1f}-{media.segment_times[i][1]:.1f}s"
                for i, label in enumerate(labels)]
    return labels


def explain_item(run: RunModel, item: Item, with_label: bool = True, media: RowMedia | None = None) -> dict[str, Any]:
    """The numbers of one item (the JSON document); with ``media``, rows are labelled with their times."""
    data_cfg = DataConfig(**run.config["data"])
    batch = items_batch([item], run.config, run.meta)
    with record_details(run.model) as details:
        full = readout(run.forward(batch)[0], run.classes)
    present = {m: bool(batch[f"{m}_mask"].any()) for m in run.modalities}
    common = run.model.cfg.node_count == "common" if hasattr(run.model, "cfg") else False
    counts = {m: int(batch[f"{m}_mask"].sum()) for m in run.modalities}
    if common:
        counts = {m: counts[run.modalities[0]] if present[m] else 0 for m in run.modalities}
    labels = {m: row_labels(item, data_cfg, m, counts[m], common and m != "text") for m in run.modalities}
    if media is not None:
        labels.update({m: timed_labels(labels[m], m, media, common) for m in run.modalities if m != "text"})
    doc: dict[str, Any] = {"id": item.id, "split": item.split, "text": item.text, "run": str(run.run_dir),
                           "epoch": run.epoch, "dataset": run.config["dataset"], "task": run.config["task"],
                           "modalities": present, "prediction": full}
    if with_label:
        doc["label"] = run.classes[int(item.label)] if run.classes else float(item.label)
    if media is not None:
        doc["media"] = media.to_json()
    doc["contributions"] = {m: contribution(full, readout(run.forward(mask_modalities(batch, [m]))[0], run.classes))
                            for m in run.modalities if present[m]}
    doc["plans"] = {m: plan_record(details, m, labels) for m in details.plans}
    doc["graphs"] = {m: graph_record(details, m, labels[m]) for m in details.adjacency}
    doc["attention"] = {m: attention_record(details, m, labels) for m in details.attention}
    return doc


# --------------------------------------------------------------------------- choosing items


def worst_items(run: RunModel, cache: Path, split: str, count: int) -> list[str]:
    """Ids of the ``count`` items of ``split`` with the largest error (|pred - label|, or 1 - p(label))."""
    data = CacheDataset(cache, split, DataConfig(**run.config["data"]))
    d = Dist(0, 1, run.device)
    preds = predict(run.model, eval_loader(data, TrainConfig(batch_size=32, num_workers=0), d), d)
    labels = data.labels[preds.index]
    if run.classes is None:
        error = np.abs(preds.scores - labels)
    else:
        probs = torch.softmax(torch.from_numpy(preds.scores), -1).numpy()
        error = 1.0 - probs[np.arange(len(labels)), labels.astype(int)]
    order = np.argsort(-error, kind="stable")[:count]
    return [data.ids[preds.index[i]] for i in order]


def cached_items(cache: Path, split: str, ids: Sequence[str]) -> list[Item]:
    """The items ``ids`` of ``split``; an unknown id is a usage error that shows what ids look like."""
    with FeatureCache(cache, split=split) as reader:
        unknown = [item_id for item_id in ids if item_id not in reader.ids]
        if unknown:
            raise UsageError(f"no item {unknown[0]!r} in the {split} split of cache {cache} (ids look like: "
                             f"{', '.join(reader.ids[:3])}); see {split} ids in eval/{split}/predictions.csv")
        return [reader.get(item_id) for item_id in ids]


def clip_item(workspace: Workspace, request: ExplainRequest) -> tuple[RunModel, Item]:
    """Extract one clip exactly as ``hcm predict`` does, with the run's cache recipe."""
    from hcm.pipeline.clip import ClipInput, check_clip

    check_clip(Path(request.clip))
    predictor = Predictor.load(workspace, request.run, request.device)
    (item,) = predictor.extractor([ClipInput(Path(request.clip), request.text)])
    if isinstance(item, Exception):
        raise PredictError(str(item), EXIT_USAGE)
    item.id = Path(request.clip).stem
    return predictor, item


def recipe_sampling(run: RunModel) -> Sampling:
    """How stage one sampled the run's cache (frames, segments), from its recipe."""
    recorded = (run.meta.recipe.get("profile") or {}).get("sampling") or {}
    return Sampling(**{k: v for k, v in recorded.items() if k in Sampling.__dataclass_fields__})


def item_media(cache: Path, item_id: str, sampling: Sampling, workspace: Workspace) -> RowMedia | None:
    """The timing and frames of a cached item when its raw corpus is still where it was read."""
    utterance = find_utterance(cache, item_id, workspace)
    return None if utterance is None else row_media(utterance.video, utterance.audio, sampling)


# --------------------------------------------------------------------------- the command


def safe_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("_") or "item"


def explain(workspace: Workspace, request: ExplainRequest) -> list[dict[str, Any]]:
    """Explain the requested items; write ``<out>/<id>.json`` and ``<id>.png``; return the documents."""
    from hcm.apps.explain_plot import plot_explanation

    if request.clip is not None:
        run, item = clip_item(workspace, request)
        clip = MediaRef(Path(request.clip))
        media = [row_media(clip, clip, recipe_sampling(run))]
        docs = [explain_item(run, item, with_label=False, media=media[0])]
        out = request.out or run.run_dir / "explain" / "clips"
    else:
        run_dir = Path(request.run) if request.run is not None else find_latest_run(workspace.runs)
        run = RunModel.load(run_dir, request.device, request.features)
        cache = Path(request.features or run.config["cache"])
        ids = request.ids or worst_items(run, cache, request.split, request.worst or 3)
        items, sampling = cached_items(cache, request.split, ids), recipe_sampling(run)
        media = [item_media(cache, item.id, sampling, workspace) for item in items]
        docs = [explain_item(run, item, media=found) for item, found in zip(items, media)]
        out = request.out or run.run_dir / "explain" / request.split
    out.mkdir(parents=True, exist_ok=True)
    for doc, found in zip(docs, media):
        stem = out / safe_name(doc["id"])
        write_json(stem.with_suffix(".json"), doc)
        frames = found.thumbnails if found is not None else None
        atomic_write(stem.with_suffix(".png"), lambda tmp, d=doc, f=frames: plot_explanation(d, tmp, f))
        doc["files"] = [str(stem.with_suffix(".json")), str(stem.with_suffix(".png"))]
    return docs


def explain_table(docs: list[dict[str, Any]]) -> Table:
    """One row per item: label, prediction, and each modality's contribution."""
    table = Table(title=f"{len(docs)} item(s) explained")
    mods = list(dict.fromkeys(m for doc in docs for m in doc["modalities"]))
    for header in ["id", "label", "prediction", *[f"Δ {m}" for m in mods]]:
        table.add_column(header, justify="left" if header == "id" else "right", overflow="fold")
    for doc in docs:
        pred = doc["prediction"]
        shown = f"{pred['score']:+.3f}" if "score" in pred else pred["class"]
        label = doc.get("label", "-")
        table.add_row(doc["id"], f"{label:+.2f}" if isinstance(label, float) else str(label), shown,
                      *[f"{doc['contributions'][m]['difference']:+.3f}" if m in doc["contributions"] else "masked"
                        for m in mods])
    return table


def explain_command(workspace: Workspace, request: ExplainRequest) -> int:
    """``hcm explain``: the table, then where the files went; a clear message and exit code on failure."""
    def work() -> None:
        docs = explain(workspace, request)
        console = Console(highlight=False)
        print_table(console, explain_table(docs))
        console.print(f"wrote {len(docs)} item(s) to {Path(docs[0]['files'][0]).parent} (<id>.json, <id>.png)"
                      if docs else "nothing to explain")

    return report_errors(work, also=(RuntimeError,))  # RuntimeError: a damaged checkpoint
