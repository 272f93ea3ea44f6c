"""``hcm predict``: one new clip (and its transcript) through stage one's extraction, then a trained run.

The clip goes through exactly the code ``hcm extract`` runs (``hcm.pipeline.extract.extract_clip``:
the same media decoding, encoders and masking rules) with the profile rebuilt from the recipe stored
in the run's cache (``manifest.json``, ``hcm.pipeline.profiles.profile_from_recipe``). The weights
found now must be the cache's (by content) and the rebuilt encoders must declare the very feature
streams of that cache; otherwise the prediction is refused naming the encoder, because the run's
model would read features it never saw. The item then becomes a one-example batch
(``hcm.training.data``) for the run's best checkpoint.

This module, with ``hcm.apps.ablate`` and ``hcm.apps.quickstart``, is one of the only three
``hcm.model`` modules that call stage one (``hcm.pipeline``); the rest of stage two reads caches
only.

A missing modality does not stop a prediction: without ``--text`` (hcm does no speech
recognition) the text modality is masked, and a clip without an audio (or video) stream is
predicted with that modality masked, exactly as extraction masks it; the output says so.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from hcm.cache import CacheMeta, Item
from hcm.core.device import resolve_device
from hcm.core.errors import EXIT_FAILED, EXIT_USAGE, HcmError, report_errors
from hcm.core.files import json_safe, read_json
from hcm.core.names import CLASSIFICATION
from hcm.core.workspace import Workspace
from hcm.model.config import ModelConfig
from hcm.training.data import Collate, DataConfig, item_example, read_cache_meta
from hcm.training.runs import RunPaths, find_latest_run
from hcm.training.evaluate import load_run_model
from hcm.training.trainer import model_inputs

NO_TEXT_NOTE = ("no transcript given (--text): hcm does no speech recognition, so the text modality is "
                "masked and the prediction uses video and audio only; pass --text \"...\" to use the words")


class PredictError(HcmError):
    """A prediction cannot be made; ``exit_code`` is what ``hcm predict`` returns."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Prediction:
    """The outcome of one ``hcm predict`` (also its ``--json`` document)."""

    clip: str  # the clip as given
    run: str  # the run folder whose best checkpoint predicted
    epoch: int  # that checkpoint's epoch
    dataset: str  # the run's dataset
    task: str  # "regression" or "classification"
    label: str  # the emotion class, or the sentiment polarity (positive / negative / neutral)
    score: float | None  # regression: the sentiment score; None for classes
    label_range: list[float] | None  # regression: the score range of the dataset
    probabilities: dict[str, float] | None  # classification: class -> probability, best first
    modalities: dict[str, bool]  # each modality the run uses -> whether the clip supplied it
    notes: list[str] = field(default_factory=list)  # why a modality is masked, other remarks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the run and its recipe


def load_run(workspace: Workspace, run: Path | None) -> tuple[Path, dict[str, Any], CacheMeta]:
    """The run folder (default: the workspace's latest), its config, and its cache's metadata."""
    try:
        run_dir = Path(run) if run is not None else find_latest_run(workspace.runs)
        config = read_json(RunPaths(run_dir).config, "run config")
    except (FileNotFoundError, ValueError) as error:
        raise PredictError(str(error)) from error
    cache = Path(config["cache"])
    try:
        meta, _ = read_cache_meta(cache)
    except Exception as error:  # a missing or damaged manifest, whichever way the reader says it
        raise PredictError(
            f"run {run_dir} was trained on cache {cache}, whose manifest.json cannot be read ({error}); "
            f"predict needs it for the extraction recipe: restore that cache or re-extract it there"
        ) from error
    source = meta.recipe.get("source") if isinstance(meta.recipe, dict) else None
    if isinstance(source, dict) and source.get("format"):
        raise PredictError(
            f"run {run_dir} was trained on features imported from {source.get('file')} ({source['format']} "
            f"format, `hcm import {source['format']}`): hcm cannot compute those features from a clip, so predict "
            f"needs a run trained on raw media. Extract the raw dataset (`hcm extract`), train on that cache, "
            f"and predict with that run (--run)."
        )
    if meta.recipe_hash != config.get("recipe_hash"):
        raise PredictError(f"cache {cache} was re-extracted with another recipe since run {run_dir} was trained "
                           f"(recipe hash {meta.recipe_hash[:12]}, run: {str(config.get('recipe_hash'))[:12]}); "
                           f"predict with a run trained on the current cache")
    return run_dir, config, meta


def extract_for_run(clip: Path, text: str | None, meta: CacheMeta, device: str, weights: Any = None) -> Item:
    """The cache item ``hcm extract`` would write for ``clip`` with the recipe of the run's cache."""
    from hcm.pipeline.extract import extract_clip
    from hcm.pipeline.profiles import profile_from_recipe

    item = extract_clip(clip, text, profile_from_recipe(meta.recipe), weights=weights, device=device, like=meta)
    if text is None:
        item.notes["text"] = NO_TEXT_NOTE
    return item


# --------------------------------------------------------------------------- the model


def item_batch(item: Item, config: dict[str, Any], meta: CacheMeta) -> dict[str, torch.Tensor]:
    """One item as the padded batch of the model contract (without a label: no loss is computed)."""
    data_cfg = DataConfig(**config["data"])
    specs = meta.specs
    dims = {m: sum(specs[name].dim for name in names) for m, names in data_cfg.streams.items()}
    batch = Collate(dims, regression=meta.task != CLASSIFICATION)([item_example(0, item, data_cfg)])
    batch.pop("label")
    return batch


def describe(output: torch.Tensor, config: dict[str, Any]) -> dict[str, Any]:
    """The model output of one item as label, score and probabilities."""
    facts = config["facts"]
    if config["task"] == CLASSIFICATION:
        probs = torch.softmax(output.float().reshape(-1), dim=0).tolist()  # (C,)
        ranked = sorted(zip(facts["class_names"], probs), key=lambda pair: -pair[1])
        return {"label": ranked[0][0], "score": None, "label_range": None,
                "probabilities": {name: round(p, 6) for name, p in ranked}}
    score = float(output.reshape(-1)[0])
    polarity = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    return {"label": polarity, "score": score, "label_range": facts.get("label_range"), "probabilities": None}


def predict_clip(workspace: Workspace, clip: Path, text: str | None = None, run: Path | None = None,
                 device: str = "auto", weights: Any = None) -> Prediction:
    """Predict the sentiment score or emotion of one clip with a run (default: the latest).

    Args:
        clip: a video file (or an audio file: the video modality is then masked).
        text: the clip's transcript; ``None`` masks the text modality (no speech recognition).
        run: the run folder; default the newest run of the workspace.
        device: ``auto``, ``cpu``, ``cuda``.
        weights: ``hcm.pipeline.profiles.WeightOptions`` for profiles with pretrained weights.
    """

    from hcm.pipeline.extract import check_clip

    clip = Path(clip)
    check_clip(clip)
    run_dir, config, meta = load_run(workspace, run)
    item = extract_for_run(clip, text, meta, device, weights)
    torch_device = resolve_device(device)
    model, epoch = load_run_model(RunPaths(run_dir), config, "best", torch_device)
    with torch.no_grad():
        out = model(model_inputs(item_batch(item, config, meta), torch_device))
    used = list(ModelConfig.from_dict(config["model"]).modality_names)
    present = {m: bool(item.masks.get(m, True)) for m in used}
    notes = [item.notes[m] for m in used if not present[m] and m in item.notes]
    if not any(present.values()):
        raise PredictError(f"clip {clip} gives none of the modalities run {run_dir.name} uses ({used}): "
                           f"{'; '.join(notes)}", EXIT_USAGE)
    if text is not None and "text" not in used:
        notes.append(f"run {run_dir.name} uses modalities {config['model']['modalities']!r}: --text is not used")
    return Prediction(clip=str(clip), run=str(run_dir), epoch=epoch, dataset=config["dataset"], task=config["task"],
                      modalities=present, notes=notes, **describe(out.prediction[0], config))


# --------------------------------------------------------------------------- printing


def format_prediction(result: Prediction) -> str:
    """A few human-readable lines (rich markup)."""
    lines = [f"[bold]{result.clip}[/]  (run {Path(result.run).name}, epoch {result.epoch})"]
    if result.score is not None:
        low, high = result.label_range or (math.nan, math.nan)
        lines.append(f"sentiment score [bold]{result.score:+.3f}[/] ({result.label}; scale {low:g} to {high:g})")
    else:
        lines.append(f"emotion [bold]{result.label}[/]")
        width = max(len(name) for name in result.probabilities)
        bars = result.probabilities.items()
        lines += [f"  {name:<{width}}  {p:6.1%}  {'█' * int(round(p * 30))}" for name, p in bars]
    used = ", ".join(f"{m} {'yes' if ok else 'masked'}" for m, ok in result.modalities.items())
    lines.append(f"modalities: {used}")
    lines += [f"[yellow]note:[/] {note}" for note in result.notes]
    return "\n".join(lines)


def predict_command(workspace: Workspace, clip: Path, text: str | None, run: Path | None, as_json: bool,
                    device: str = "auto", weights: Any = None) -> int:
    """``hcm predict``: print the prediction (or its JSON); a clear message and exit code on failure
    (2: the clip cannot be used, a bad option, missing weights; 1: no usable run or cache, weights
    other than the cache's)."""
    def work() -> None:
        status = Console(stderr=True).status("extracting features and predicting", spinner="dots")
        with status if not as_json else nullcontext():
            result = predict_clip(workspace, clip, text, run, device, weights)
        if as_json:
            print(json.dumps(json_safe(result.to_dict()), indent=2))
        else:
            Console(highlight=False).print(format_prediction(result))

    return report_errors(work, also=(RuntimeError,))  # RuntimeError: a damaged checkpoint
