"""Dataset facts and the shipped hyper-parameter files.

Dataset facts (task, classes, key metric, which cached streams feed which modality) live in
``configs/datasets/<name>.json``; hyper-parameters live in ``configs/hcmnet/<name>.json``.
Facts and hyper-parameters are kept apart on purpose: a new hyper-parameter file never
restates what a dataset is.

A hyper-parameter file says where each number comes from::

    {"model": {...}, "train": {...},          # settings the paper gives (or the paper's "off")
     "hcm_choices": {"model": {...}, "train": {...},   # values the paper does not give
                     "reasons": {"key": "why hcm chose it", ...}}}

``load_hparams`` checks that no key is in both parts, that every hcm choice has a reason and
no reason is left without a choice, and that no reading switch hides among the choices (a
switch departs from an equation; it belongs in ``model``, where ``reading`` governs it).
The two parts are merged for training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hcm.core.configs import check_keys, configs_dir
from hcm.core.errors import UsageError
from hcm.core.files import read_json_object
from hcm.core.names import CLASSIFICATION, MODALITIES, REGRESSION
from hcm.model.config import SWITCHES_BY_NAME, ModelConfig
from hcm.training.metrics import METRIC_SETS


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset is, independent of any model setting."""

    name: str  # dataset name, also the JSON file's stem
    task: str  # "regression" (sentiment score) or "classification" (emotion classes)
    num_classes: int  # number of classes; 0 for regression
    class_names: tuple[str, ...]  # class index -> name; empty for regression
    key_metric: str  # metric that selects the best epoch on the validation split
    higher_is_better: bool  # direction of key_metric
    label_range: tuple[float, float] | None  # (low, high) of regression scores; None for classes
    streams: dict[str, tuple[str, ...]]  # modality -> cached feature streams, first sets node count
    metrics: str = ""  # metric set: "" by task (training/metrics.py), "sims" for MMSA's CH-SIMS set

    def __post_init__(self) -> None:
        if self.task not in (REGRESSION, CLASSIFICATION):
            raise ValueError(f"dataset {self.name!r}: task must be 'regression' or 'classification', got {self.task!r}")
        if self.task == CLASSIFICATION and self.num_classes != len(self.class_names):
            raise ValueError(
                f"dataset {self.name!r}: num_classes={self.num_classes} but {len(self.class_names)} class_names"
            )
        if self.task == REGRESSION and self.label_range is None:
            raise ValueError(f"dataset {self.name!r}: a regression dataset needs label_range [low, high]")
        if self.metrics not in METRIC_SETS:
            raise ValueError(f"dataset {self.name!r}: metrics must be one of {METRIC_SETS}, got {self.metrics!r}")
        missing = [m for m in MODALITIES if not self.streams.get(m)]
        if missing:
            raise ValueError(f"dataset {self.name!r}: no streams listed for modality {missing}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> DatasetFacts:
        """Build from a JSON object, rejecting unknown keys."""
        check_keys(cls, data, source)
        values = dict(data)
        values["class_names"] = tuple(values.get("class_names", ()))
        if values.get("label_range") is not None:
            values["label_range"] = tuple(float(v) for v in values["label_range"])
        values["streams"] = {m: tuple(s) for m, s in values.get("streams", {}).items()}
        try:
            return cls(**values)
        except TypeError as error:
            raise ValueError(f"incomplete DatasetFacts in {source}: {error}") from error


def shipped_config(kind: str, name: str) -> Path:
    """``configs/<kind>/<name>.json``; a missing one raises FileNotFoundError naming the known ones."""
    folder = configs_dir() / kind
    path = folder / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise FileNotFoundError(f"no {kind} config {path}; known names: {known or 'none'}")
    return path


def load_dataset_facts(name: str) -> DatasetFacts:
    """Read ``configs/datasets/<name>.json``."""
    path = shipped_config("datasets", name)
    return DatasetFacts.from_dict(read_json_object(path, "dataset facts file"), str(path))


def facts_for_cache(meta: Any) -> DatasetFacts:
    """The facts of a cache's dataset: those its recipe records (``recipe["facts"]``, a corpus of
    one's own read with ``--dataset custom``), else ``configs/datasets/<dataset>.json``; a cache that
    declares its own ``recipe["streams"]`` (one imported from another framework's features, e.g.
    ``hcm import mmsa``) feeds those streams."""
    recipe = meta.recipe if isinstance(meta.recipe, dict) else {}
    recorded = recipe.get("facts")
    facts = (DatasetFacts.from_dict(recorded, f"the recipe of the {meta.dataset} cache") if isinstance(recorded, dict)
             else load_dataset_facts(meta.dataset))
    declared = recipe.get("streams")
    if not declared:
        return facts
    return replace(facts, streams={m: tuple(names) for m, names in declared.items()})


def _check_choices(choices: Any, paper: dict[str, dict[str, Any]], path: Path) -> dict[str, dict[str, Any]]:
    """Validate the ``hcm_choices`` section against the paper's part; return its model/train parts."""
    if not isinstance(choices, dict) or set(choices) - {"model", "train", "reasons"}:
        raise ValueError(f"{path}: 'hcm_choices' must be an object with 'model', 'train' and 'reasons'")
    parts = {section: dict(choices.get(section, {})) for section in ("model", "train")}
    reasons = choices.get("reasons", {})
    chosen = set(parts["model"]) | set(parts["train"])
    for section, values in parts.items():
        twice = sorted(set(values) & set(paper[section]))
        if twice:
            raise ValueError(f"{path}: {twice} are set both as the paper's {section} settings and as hcm's "
                             "choices; keep each key in one place")
    switches = sorted(chosen & (set(SWITCHES_BY_NAME) | {"reading"}))
    if switches:
        raise ValueError(f"{path}: reading switches {switches} are not choices where the paper is silent; "
                         "set them in 'model' (docs/model.md lists them)")
    unexplained = sorted(k for k in chosen if not str(reasons.get(k, "")).strip())
    stray = sorted(set(reasons) - chosen)
    if unexplained or stray:
        raise ValueError(f"{path}: hcm_choices need a reason for each choice (missing for {unexplained}) "
                         f"and no reason without a choice (stray: {stray})")
    return parts


MODEL_SIZES = ("auto", "paper", "small")


def model_size_for(requested: str, profile: str) -> str:
    """``auto`` -> ``small`` for a cache of the ``tiny`` extraction profile (also an imported
    ``mmsa-tiny`` one), else ``paper``; an explicit size is kept."""
    if requested not in MODEL_SIZES:
        raise UsageError(f"model size {requested!r} is not one of {', '.join(MODEL_SIZES)}")
    if requested != "auto":
        return requested
    return "small" if profile.rsplit("-", 1)[-1] == "tiny" else "paper"


def model_size_settings(size: str) -> dict[str, Any]:
    """The model settings a size puts over a dataset's shipped ones (``configs/model_sizes.json``):
    ``paper`` changes nothing, ``small`` is a d_m 32 model for the tiny profile's small features."""
    sizes = read_json_object(configs_dir() / "model_sizes.json", "model sizes file")
    if size not in sizes:
        raise UsageError(f"model size {size!r} is not in {configs_dir() / 'model_sizes.json'}")
    ModelConfig.from_dict(sizes[size], "model_sizes.json")  # every key must be a model setting
    return dict(sizes[size])


def load_hparams(name: str) -> dict[str, Any]:
    """Read ``configs/hcmnet/<name>.json`` into ``{"model": {...}, "train": {...}, "hcm_choices": [...]}``.

    The paper's settings and hcm's choices are merged; ``hcm_choices`` lists the keys that
    are hcm's. The model section is validated here (unknown keys raise); the train section
    belongs to the trainer and is returned as is.
    """
    path = shipped_config("hcmnet", name)
    data = read_json_object(path, "hyper-parameter file")
    unknown = sorted(set(data) - {"model", "train", "hcm_choices"})
    if unknown:
        raise ValueError(f"hyper-parameter file {path} has unknown section(s) {unknown}; "
                         "use 'model', 'train' and 'hcm_choices'")
    paper = {section: dict(data.get(section, {})) for section in ("model", "train")}
    choices = _check_choices(data.get("hcm_choices", {}), paper, path)
    model = {**paper["model"], **choices["model"]}
    ModelConfig.from_dict(model, str(path))
    return {"model": model, "train": {**paper["train"], **choices["train"]},
            "hcm_choices": sorted(set(choices["model"]) | set(choices["train"]))}
