"""Dataset facts, the shipped hyper-parameter files and the training settings (``TrainConfig``).

Dataset facts (task, classes, key metric, which cached streams feed which modality) live in
``configs/datasets/<name>.json``; hyper-parameters live in ``configs/hcmnet/<name>.json``.
Facts and hyper-parameters are kept apart on purpose: a new hyper-parameter file never
restates what a dataset is.

A hyper-parameter file says where each number comes from::

    {"model": {...}, "train": {...},          # settings the paper gives
     "hcm_choices": {"model": {...}, "train": {...},   # values the paper does not give
                     "reasons": {"key": "why hcm chose it", ...},
                     "fixed": {"name": "a choice built into the code, and why", ...}}}

``load_hparams`` checks that no key is in both parts, that every hcm choice has a reason and
no reason is left without a choice, that no reading switch hides among the choices (a
switch departs from an equation; it belongs in ``model``, where ``reading`` governs it), and
that no parameter of a switch does either (it acts only under the switch's departing value
and is documented with it). The two parts are merged for training.

``TrainConfig`` holds the optimisation settings of one run; ``with_class_weights`` turns the
``inverse_frequency`` class-weight setting into numbers from the training split.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hcm.core.configs import check_keys, configs_dir
from hcm.core.errors import UsageError
from hcm.core.files import read_json_object
from hcm.core.names import CLASSIFICATION, MODALITIES, REGRESSION
from hcm.model.config import INVERSE_FREQUENCY, SWITCHES_BY_NAME, ModelConfig
from hcm.training.metrics import METRIC_SETS

log = logging.getLogger(__name__)


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
    """Validate the ``hcm_choices`` section against the paper's part; return its model and train parts."""
    if not isinstance(choices, dict) or set(choices) - {"model", "train", "reasons", "fixed"}:
        raise ValueError(f"{path}: 'hcm_choices' must be an object with 'model', 'train', 'reasons' and 'fixed'")
    fixed = choices.get("fixed", {})
    if not isinstance(fixed, dict) or not all(isinstance(v, str) and v.strip() for v in fixed.values()):
        raise ValueError(f"{path}: 'hcm_choices.fixed' must map each built-in choice to the reason for it")
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
    parameters = sorted(chosen & {p for switch in SWITCHES_BY_NAME.values() for p in switch.parameters})
    if parameters:
        raise ValueError(f"{path}: {parameters} are parameters of reading switches (READING_SWITCHES in "
                         "model/config.py): they act only under hcm's value of their switch; leave them out")
    unexplained = sorted(k for k in chosen if not str(reasons.get(k, "")).strip())
    stray = sorted(set(reasons) - chosen)
    if unexplained or stray:
        raise ValueError(f"{path}: hcm_choices need a reason for each choice (missing for {unexplained}) "
                         f"and no reason without a choice (stray: {stray})")
    return parts


MODEL_SIZES = ("auto", "paper", "small")
STEP_GRAPH_MODES = ("off", "auto", "on")  # TrainConfig.step_graph (hcm.training.step)


def model_size_for(requested: str, profile: str) -> str:
    """``auto`` -> ``small`` for a cache of the ``tiny`` extraction profile (also an imported
    ``mmsa-tiny`` one), else ``paper``; an explicit size is kept."""
    if requested not in MODEL_SIZES:
        raise UsageError(f"model size {requested!r} is not one of {', '.join(MODEL_SIZES)}")
    if requested != "auto":
        return requested
    return "small" if profile.rsplit("-", 1)[-1] == "tiny" else "paper"


def model_size_settings(size: str) -> dict[str, dict[str, Any]]:
    """``{"model": {...}, "train": {...}}`` a size puts over a dataset's shipped settings
    (``configs/model_sizes.json``): ``paper`` changes nothing; ``small`` is a d_m 32 model for
    the tiny profile's small features, trained in batches of 16 at lr 1e-3 (the sample
    corpora have 43-64 training items). Every value is hcm's choice and has a reason there."""
    path = configs_dir() / "model_sizes.json"
    sizes = read_json_object(path, "model sizes file")
    if size not in sizes:
        raise UsageError(f"model size {size!r} is not in {path}")
    parts = _check_choices(sizes[size], {"model": {}, "train": {}}, path)  # hcm's choices, each with its reason
    ModelConfig.from_dict(parts["model"], str(path))  # every key must be a model setting
    return parts


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


METRIC_ALIASES = {"w_f1": "weighted_f1", "wf1": "weighted_f1", "f1_weighted": "weighted_f1", "acc": "accuracy",
                  "acc_7": "acc7", "acc_2": "acc2_non0", "acc2": "acc2_non0", "f1": "f1_non0"}


@dataclass
class TrainConfig:
    """Optimisation settings (paper: AdamW, lr 2e-4, batch 64, 100 epochs).

    ``batch_size`` is the global batch: under DDP each of the W ranks takes batch_size / W.
    """

    epochs: int = 100  # maximum number of epochs
    batch_size: int = 64  # global batch size
    optimizer: str = "adamw"  # the paper's optimiser; the only one offered
    lr: float = 2e-4  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW's decoupled decay, under the model's weight_penalty "decoupled" only
    scheduler: str = "cosine"  # "cosine" decay to 0 or "constant", after warm-up
    warmup_epochs: float = 0.0  # linear warm-up length in epochs
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    patience: int = 10  # epochs without validation improvement before stopping; 0 disables
    seed: int = 0  # seeds model init, dropout and the shuffling order
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: str = "auto"  # "auto" (bf16 on GPUs that have it, else fp16; off on CPU), "bf16", "fp16", "off"
    num_workers: int = 0  # DataLoader worker processes
    in_memory: bool = False  # load the cache into memory (small caches)
    eval_batch_size: int = 0  # batch size for validation/evaluation; 0 = batch_size
    max_text_tokens: int | None = None  # cap on text nodes per item
    max_frames: int | None = None  # cap on video nodes per item
    max_audio: int | None = None  # cap on audio nodes per item
    standardise_streams: bool = True  # scale each feed stream by the train split's mean/std
    skip_nonfinite: int = 0  # batches with a non-finite loss/gradient skipped (logged) before stopping
    step_graph: str = "off"  # "off", "auto", "on": the step as CUDA graph replays (hcm.training.step)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0; "
                             f"got {self.epochs}, {self.batch_size}, {self.lr}")
        if self.optimizer != "adamw":
            raise ValueError(f"optimizer {self.optimizer!r} is not offered; hcm trains with 'adamw' as the paper does")
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {self.scheduler!r}")
        if self.skip_nonfinite < 0:
            raise ValueError(f"skip_nonfinite must be 0 or more, got {self.skip_nonfinite}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off; got {self.amp!r}")
        if self.step_graph not in STEP_GRAPH_MODES:
            raise ValueError(f"step_graph must be off, auto or on; got {self.step_graph!r}")

    def adamw_decay(self, model_cfg: ModelConfig) -> float:
        """AdamW's decoupled weight decay: ``weight_decay`` under the model's ``weight_penalty``
        "decoupled" (hcm's reading of Eq. 16's xi); none under "l2-loss", where xi is in the loss."""
        return self.weight_decay if model_cfg.weight_penalty == "decoupled" else 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "TrainConfig":
        check_keys(cls, data, source)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def key_metric_of(facts: DatasetFacts) -> str:
    name = facts.key_metric.lower().replace("-", "_")
    return METRIC_ALIASES.get(name, name)


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
    """Eq. 16's class weights ``n / (k n_c)`` over the k classes present in ``labels``.

    sklearn's ``"balanced"`` weights; a class absent from the training split gets weight 1
    (it is never a target there, so its weight does not enter the training loss).
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).astype(np.int64)
    present = np.unique(labels)
    weights = np.ones(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return tuple(float(w) for w in weights)


def with_class_weights(model_cfg: ModelConfig, train_labels: np.ndarray) -> ModelConfig:
    """Turn ``class_weights="inverse_frequency"`` into numbers from the training split.

    The run's config.json records the numbers (what the run used); a regression task takes
    no class weights, so the setting is dropped there.
    """
    if model_cfg.class_weights != INVERSE_FREQUENCY:
        return model_cfg
    if model_cfg.task != CLASSIFICATION:
        return dataclasses.replace(model_cfg, class_weights=None)
    weights = inverse_frequency_weights(train_labels, model_cfg.num_classes)
    log.info("class weights (inverse frequency over the training split): %s", [round(w, 3) for w in weights])
    return dataclasses.replace(model_cfg, class_weights=weights)
