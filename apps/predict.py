"""``hcm predict``: one new clip (and its transcript) through stage one's extraction, then a trained run.

The clip goes through exactly the code ``hcm extract`` runs (``hcm.pipeline.clip.extract_clip``:
the same media decoding, encoders and masking rules) with the profile rebuilt from the recipe stored
in the run's cache (``manifest.json``, ``hcm.pipeline.profiles.profile_from_recipe``). The weights
found now must be the cache's (by content) and the rebuilt encoders must declare the very feature
streams of that cache; otherwise the prediction is refused naming the encoder, because the run's
model would read features it never saw. The items then become a padded batch
(``hcm.training.data``) for the run's best checkpoint.

Like every ``hcm.apps`` module it may call stage one (``hcm.pipeline``); ``hcm.training`` and
``hcm.model`` never do, they read caches only.

Several clips (``hcm predict a.mp4 b.mp4``, a folder of clips, or a CSV file with the columns
``path,text[,context_before,context_after]``) are extracted in batches with the encoders built
once and predicted by one model load; the utterances of a context cell are separated by `` | ``,
and a CSV's relative paths are read from the CSV's folder. A clip that cannot be used there is a
row with its error, not the end of the batch (reading these sources: ``hcm.apps.predict_inputs``).
``--out FILE.csv`` or ``FILE.json`` keeps the rows.

A missing modality does not stop a prediction: without ``--text`` (hcm does no speech
recognition) the text modality is masked, and a clip without an audio (or video) stream is
predicted with that modality masked, exactly as extraction masks it; the output says so.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import torch
from rich.console import Console
from rich.table import Table

from hcm.apps.predict_inputs import gather_inputs, split_utterances
from hcm.cache import CacheMeta, Item
from hcm.core.device import resolve_device
from hcm.core.errors import EXIT_FAILED, EXIT_USAGE, HcmError, report_errors
from hcm.core.files import json_safe, read_json, write_csv, write_json
from hcm.core.names import CLASSIFICATION
from hcm.core.progress import progress_bar
from hcm.core.tables import print_table
from hcm.core.workspace import Workspace
from hcm.model.config import ModelConfig
from hcm.pipeline.clip import ClipInput
from hcm.pipeline.profiles import WeightOptions
from hcm.training.data import Collate, DataConfig, item_example, read_cache_meta
from hcm.training.evaluate import check_cache_matches, load_run_model
from hcm.training.inference import model_inputs
from hcm.training.runs import RunPaths, find_latest_run

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
    probabilities: dict[str, float] | None  # classification: class -> probability, in the dataset's class order
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


def clip_extractor(meta: CacheMeta, device: str, weights: Any = None, precision: str = "auto"):
    """A :class:`hcm.pipeline.clip.ClipExtractor` with the recipe of the run's cache (``auto``
    precision: the cache's, where the device runs it)."""
    from hcm.pipeline.clip import ClipExtractor
    from hcm.pipeline.profiles import profile_from_recipe

    return ClipExtractor(profile_from_recipe(meta.recipe), weights=weights, device=device, like=meta,
                         precision=precision)


# --------------------------------------------------------------------------- the model


def items_batch(items: Sequence[Item], config: dict[str, Any], meta: CacheMeta) -> dict[str, torch.Tensor]:
    """Items as the padded batch of the model contract (without labels: no loss is computed)."""
    data_cfg = DataConfig(**config["data"])
    specs = meta.specs
    dims = {m: sum(specs[name].dim for name in names) for m, names in data_cfg.streams.items()}
    collate = Collate(dims, regression=meta.task != CLASSIFICATION)
    batch = collate([item_example(i, item, data_cfg) for i, item in enumerate(items)])
    batch.pop("label")
    return batch


def describe(output: torch.Tensor, config: dict[str, Any]) -> dict[str, Any]:
    """The model output of one item as label, score and probabilities."""
    facts = config["facts"]
    if config["task"] == CLASSIFICATION:
        probs = torch.softmax(output.float().reshape(-1), dim=0).tolist()  # (C,)
        probabilities = {name: round(p, 6) for name, p in zip(facts["class_names"], probs)}
        return {"label": max(probabilities, key=probabilities.get), "score": None, "label_range": None,
                "probabilities": probabilities}
    score = float(output.reshape(-1)[0])
    polarity = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    return {"label": polarity, "score": score, "label_range": facts.get("label_range"), "probabilities": None}


@dataclass
class RunModel:
    """A run's config, cache metadata and best model, loaded once."""

    run_dir: Path
    config: dict[str, Any]
    meta: CacheMeta
    model: torch.nn.Module
    epoch: int
    device: torch.device

    @classmethod
    def load(cls, run_dir: Path, device: str, cache: Path | None = None) -> "RunModel":
        config = read_json(RunPaths(run_dir).config, "run config")
        cache = cache or Path(config["cache"])
        check_cache_matches(config, cache)
        meta, _ = read_cache_meta(cache)
        torch_device = resolve_device(device)
        model, epoch = load_run_model(RunPaths(run_dir), config, "best", torch_device)
        return cls(run_dir, config, meta, model, epoch, torch_device)

    @cached_property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model uses (a run config from before ``reading`` is read as it was meant)."""
        return ModelConfig.from_saved(self.config["model"]).modality_names

    @property
    def classes(self) -> list[str] | None:
        return self.config["facts"].get("class_names") if self.config["task"] == CLASSIFICATION else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self.model(model_inputs(batch, self.device)).prediction.float().cpu()


@dataclass
class Predictor(RunModel):
    """A run's model and the extraction of its cache, loaded once for any number of clips."""

    extractor: Any

    @classmethod
    def load(cls, workspace: Workspace, run: Path | None, device: str = "auto", weights: Any = None,
             precision: str = "auto") -> "Predictor":
        run_dir, config, meta = load_run(workspace, run)
        extractor = clip_extractor(meta, device, weights, precision)
        torch_device = resolve_device(device)
        model, epoch = load_run_model(RunPaths(run_dir), config, "best", torch_device)
        return cls(run_dir, config, meta, model, epoch, torch_device, extractor)

    def __call__(self, inputs: Sequence[ClipInput]) -> list[Prediction | PredictError]:
        """One prediction per clip, in order; a clip that cannot be used gives its error instead."""
        results: list[Any] = self.extractor(inputs)
        usable = [i for i, r in enumerate(results) if not isinstance(r, Exception) and self._present(r)]
        for i, result in enumerate(results):
            if isinstance(result, Exception):
                results[i] = PredictError(str(result), EXIT_USAGE)
            elif i not in usable:
                results[i] = self._nothing_usable(inputs[i].clip, result)
        if usable:
            with torch.no_grad():
                out = self.model(model_inputs(items_batch([results[i] for i in usable], self.config, self.meta),
                                              self.device))
            for row, i in enumerate(usable):
                results[i] = self._prediction(inputs[i], results[i], out.prediction[row])
        return results

    @property
    def used(self) -> list[str]:
        return list(self.modalities)

    def _present(self, item: Item) -> bool:
        return any(item.masks.get(m, True) for m in self.used)

    def _nothing_usable(self, clip: Path, item: Item) -> PredictError:
        notes = [item.notes[m] for m in self.used if m in item.notes]
        return PredictError(f"clip {clip} gives none of the modalities run {self.run_dir.name} uses ({self.used}): "
                            f"{'; '.join(notes)}", EXIT_USAGE)

    def _prediction(self, given: ClipInput, item: Item, output: torch.Tensor) -> Prediction:
        if given.text is None:
            item.notes["text"] = NO_TEXT_NOTE
        present = {m: bool(item.masks.get(m, True)) for m in self.used}
        notes = [item.notes[m] for m in self.used if not present[m] and m in item.notes] + self.extractor.notes
        if given.text is not None and "text" not in self.used:
            notes.append(f"run {self.run_dir.name} uses modalities {self.config['model']['modalities']!r}: "
                         f"the transcript is not used")
        return Prediction(clip=str(given.clip), run=str(self.run_dir), epoch=self.epoch,
                          dataset=self.config["dataset"], task=self.config["task"], modalities=present, notes=notes,
                          **describe(output, self.config))


def predict_clip(workspace: Workspace, clip: Path, text: str | None = None, run: Path | None = None,
                 device: str = "auto", weights: Any = None,
                 context: tuple[Sequence[str], Sequence[str]] = ((), ()), precision: str = "auto") -> Prediction:
    """Predict the sentiment score or emotion of one clip with a run (default: the latest).

    Args:
        clip: a video file (or an audio file: the video modality is then masked).
        text: the clip's transcript; ``None`` masks the text modality (no speech recognition).
        run: the run folder; default the newest run of the workspace.
        device: ``auto``, ``cpu``, ``cuda``.
        weights: ``hcm.pipeline.profiles.WeightOptions`` for profiles with pretrained weights.
        context: the utterances before and after the clip (the text encoder's context window).
        precision: the encoders' arithmetic; ``auto`` is the cache's where the device runs it. Another
            one is noted in ``Prediction.notes`` (docs/extraction.md, Precision).
    """
    from hcm.pipeline.clip import check_clip

    clip = Path(clip)
    check_clip(clip)
    given = ClipInput(clip, text, tuple(context[0]), tuple(context[1]))
    (result,) = Predictor.load(workspace, run, device, weights, precision)([given])
    if isinstance(result, PredictError):
        raise result
    return result


def predict_clips(workspace: Workspace, inputs: Sequence[ClipInput], run: Path | None = None, device: str = "auto",
                  weights: Any = None, batch_size: int = 16, progress: bool = True,
                  precision: str = "auto") -> list[Prediction | PredictError]:
    """Predict many clips in batches of ``batch_size`` (one model load, encoders built once)."""
    predictor = Predictor.load(workspace, run, device, weights, precision)
    results: list[Prediction | PredictError] = []
    with progress_bar(progress, stderr=True) as bar:
        task = bar.add_task("predicting", total=len(inputs))
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            results += predictor(chunk)
            bar.advance(task, len(chunk))
    return results


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
        bars = sorted(result.probabilities.items(), key=lambda pair: -pair[1])  # best first
        lines += [f"  {name:<{width}}  {p:6.1%}  {'█' * int(round(p * 30))}" for name, p in bars]
    used = ", ".join(f"{m} {'yes' if ok else 'masked'}" for m, ok in result.modalities.items())
    lines.append(f"modalities: {used}")
    lines += [f"[yellow]note:[/] {note}" for note in result.notes]
    return "\n".join(lines)


def prediction_row(given: ClipInput, result: Prediction | PredictError) -> dict[str, Any]:
    """One row of the predictions file: clip, transcript, label, score or class probabilities (in the
    dataset's class order, as evaluate's predictions.csv), the masked modalities, notes, error."""
    if isinstance(result, PredictError):
        return {"clip": str(given.clip), "text": given.text or "", "error": str(result)}
    row: dict[str, Any] = {"clip": result.clip, "text": given.text or "", "label": result.label, "score": result.score}
    row.update({f"p_{name}": p for name, p in (result.probabilities or {}).items()})
    row["masked"] = ",".join(modality for modality, ok in result.modalities.items() if not ok)
    return {**row, "notes": " / ".join(result.notes), "error": ""}


def same_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row with the same columns in the same order (a failed clip's row has empty cells), so the
    file's header does not depend on which clip came first."""
    probabilities = list(dict.fromkeys(key for row in rows for key in row if key.startswith("p_")))
    columns = ["clip", "text", "label", "score", *probabilities, "masked", "notes", "error"]
    return [{column: row.get(column, "" if column in ("masked", "notes") else None) for column in columns}
            for row in rows]


def write_predictions_file(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as CSV (``.csv``: the union of columns) or a JSON list (``.json``)."""
    if path.suffix.lower() == ".json":
        write_json(path, rows)
    else:
        write_csv(path, rows)


def predictions_table(rows: list[dict[str, Any]]) -> Table:
    """Clip, label, the score (signed) or the label's probability, masked modalities, error."""
    classes = any(key.startswith("p_") for row in rows for key in row)
    table = Table(title=f"{len(rows)} clip(s)", caption="p: the label's probability" if classes else None)
    for header in ("clip", "label", "score / p", "masked", "error"):
        table.add_column(header, justify="right" if header == "score / p" else "left")
    for row in rows:
        probabilities = [v for k, v in row.items() if k.startswith("p_") and v is not None]
        if row.get("score") is not None:
            shown = f"{row['score']:+.3f}"
        else:
            shown = f"{max(probabilities):.3f}" if probabilities else ""
        table.add_row(Path(row["clip"]).name, row.get("label") or "", shown, row.get("masked") or "",
                      row.get("error") or "")
    return table


def predict_many(workspace: Workspace, request: "PredictRequest") -> None:
    """Several clips (or a folder or CSV): predict in batches, print the rows, write ``request.out``."""
    inputs = gather_inputs(request.sources, request.text, request.context)
    results = predict_clips(workspace, inputs, request.run, request.device, request.weights, request.batch_size,
                            progress=not request.quiet, precision=request.precision)
    rows = same_columns([prediction_row(given, result) for given, result in zip(inputs, results)])
    if request.as_json:
        print(json.dumps(json_safe(rows), indent=1))
    else:
        print_table(Console(highlight=False), predictions_table(rows))
    if request.out is not None:
        write_predictions_file(request.out, rows)
        Console(stderr=True).print(f"wrote {request.out} ({len(rows)} rows)", soft_wrap=True)
    failed = [row for row in rows if row["error"]]
    if failed:
        raise PredictError(f"{len(failed)} of {len(rows)} clips could not be predicted (their rows hold the error): "
                           + "; ".join(row["error"] for row in failed[:3]))


@dataclass
class PredictRequest:
    """What ``hcm predict`` asks for: clips, a folder or a CSV (``sources``), with one run."""

    sources: list[Path]
    text: str | None = None
    run: Path | None = None
    as_json: bool = False
    device: str = "auto"
    weights_dir: Path | None = None  # folder with the profile's weight files (--weights-dir)
    out: Path | None = None
    batch_size: int = 16
    quiet: bool = False
    context: tuple[str, str] = ("", "")  # utterances before / after one clip, separated by " | "
    precision: str = "auto"  # the encoders' arithmetic (auto: the cache's, where the device runs it)

    @property
    def weights(self) -> WeightOptions:
        """Where the run's extraction profile finds its weight files."""
        return WeightOptions(weights_dir=self.weights_dir)

    @property
    def single(self) -> bool:
        """One clip file, nothing to save: the one-clip display."""
        (first, *rest) = self.sources
        return not rest and self.out is None and not first.is_dir() and first.suffix.lower() != ".csv"


def predict_command(workspace: Workspace, request: PredictRequest) -> int:
    """``hcm predict``: print the prediction(s) (or JSON), write ``--out``; a clear message and exit code
    on failure (2: the clip cannot be used, a bad option, missing weights; 1: no usable run or cache,
    weights other than the cache's, some clips of a batch failed)."""
    def work() -> None:
        if not request.single:
            predict_many(workspace, request)
            return
        status = Console(stderr=True).status("extracting features and predicting", spinner="dots")
        with status if not request.as_json else nullcontext():
            result = predict_clip(workspace, request.sources[0], request.text, request.run, request.device,
                                  request.weights, tuple(map(split_utterances, request.context)), request.precision)
        if request.as_json:
            print(json.dumps(json_safe(result.to_dict()), indent=2))
        else:
            Console(highlight=False).print(format_prediction(result))

    return report_errors(work, also=(RuntimeError,))  # RuntimeError: a damaged checkpoint
