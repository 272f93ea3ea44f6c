"""Typed configuration of stage two: dataset facts, HCMNet settings, and the shipped JSON files.

Dataset facts (task, classes, key metric, which cached streams feed which modality) live in
``configs/datasets/<name>.json``; hyper-parameters live in ``configs/hcmnet/<name>.json`` as
``{"model": {...}, "train": {...}}``. Facts and hyper-parameters are kept apart on purpose: a
new hyper-parameter file never restates what a dataset is.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcm

REGRESSION = "regression"
CLASSIFICATION = "classification"
MODALITIES = ("text", "video", "audio")
VARIANTS = ("full", "acm-only", "ccm-only", "no-acl", "no-graph", "no-cdc")
MODALITY_LETTERS = {"t": "text", "v": "video", "a": "audio"}


def configs_dir() -> Path:
    """The folder of shipped JSON configs (package data ``hcm/configs``)."""
    return Path(hcm.__file__).parent / "configs"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"no {what} file {path}; known names: {known or 'none'}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object, found {type(data).__name__}")
    return data


def _check_keys(cls: type, data: dict[str, Any], source: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {unknown} in {source}; known keys: {sorted(known)}"
        )


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

    def __post_init__(self) -> None:
        if self.task not in (REGRESSION, CLASSIFICATION):
            raise ValueError(f"dataset {self.name!r}: task must be 'regression' or 'classification', got {self.task!r}")
        if self.task == CLASSIFICATION and self.num_classes != len(self.class_names):
            raise ValueError(
                f"dataset {self.name!r}: num_classes={self.num_classes} but {len(self.class_names)} class_names"
            )
        if self.task == REGRESSION and self.label_range is None:
            raise ValueError(f"dataset {self.name!r}: a regression dataset needs label_range [low, high]")
        missing = [m for m in MODALITIES if not self.streams.get(m)]
        if missing:
            raise ValueError(f"dataset {self.name!r}: no streams listed for modality {missing}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> DatasetFacts:
        """Build from a JSON object, rejecting unknown keys."""
        _check_keys(cls, data, source)
        values = dict(data)
        values["class_names"] = tuple(values.get("class_names", ()))
        if values.get("label_range") is not None:
            values["label_range"] = tuple(float(v) for v in values["label_range"])
        values["streams"] = {m: tuple(s) for m, s in values.get("streams", {}).items()}
        try:
            return cls(**values)
        except TypeError as error:
            raise ValueError(f"incomplete DatasetFacts in {source}: {error}") from error


def load_dataset_facts(name: str) -> DatasetFacts:
    """Read ``configs/datasets/<name>.json``."""
    path = configs_dir() / "datasets" / f"{name}.json"
    return DatasetFacts.from_dict(_read_json(path, "dataset facts"), str(path))


def load_hparams(name: str) -> dict[str, Any]:
    """Read ``configs/hcmnet/<name>.json``: ``{"model": {...}, "train": {...}}``.

    The model section is validated here (unknown keys raise); the train section belongs to
    the trainer and is returned as is.
    """
    path = configs_dir() / "hcmnet" / f"{name}.json"
    data = _read_json(path, "hyper-parameter")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ValueError(f"hyper-parameter file {path} has unknown section(s) {unknown}; use 'model' and 'train'")
    ModelConfig.from_dict(data.get("model", {}), str(path))
    return {"model": dict(data.get("model", {})), "train": dict(data.get("train", {}))}


def parse_modalities(value: str) -> tuple[str, ...]:
    """``"tva"``/``"tv"``/``"ta"``/``"va"`` (any order) -> modality names in canonical order."""
    letters = set(value)
    if not letters or not letters <= set(MODALITY_LETTERS) or len(letters) != len(value) or len(value) < 2:
        raise ValueError(f"modalities must be two or three of the letters t, v, a (e.g. 'tva', 'tv'); got {value!r}")
    return tuple(name for letter, name in MODALITY_LETTERS.items() if letter in letters)


@dataclass(frozen=True)
class ModelConfig:
    """HCMNet settings (paper symbols in brackets). One model; variants are configuration."""

    d_text: int = 0  # D_t, input width of the text rows (filled at run time from the cache)
    d_video: int = 0  # D_v, input width of the video rows (filled at run time)
    d_audio: int = 0  # D_a, input width of the audio rows (filled at run time)
    d_model: int = 256  # d_m, the shared width of every block
    num_heads: int = 8  # heads of the text attention, cross-frame fusion and PGF attention
    encoder_layers: int = 1  # attention blocks in F_direct / F_cross (Eq. 1-3)
    m_ctn: int = 8  # M_ctn, heads of the dynamic cross-attention (Eq. 4)
    cls_lambda: float = 0.1  # lambda, weight of the [CLS] term in Eq. 4
    eta: float = 0.5  # eta, cosine threshold for video graph edges (Eq. 8)
    m_gcn: int = 4  # M_gcn, GCN layers per modality (Eq. 9)
    m_c: int = 8  # M_c, Pair-wise Graph Fusion attention layers (Eq. 13-14)
    ot_eps: float = 0.1  # entropic regularisation of Sinkhorn, on costs scaled to mean 1 (Eq. 11)
    ot_iters: int = 50  # Sinkhorn iterations (Eq. 11)
    ot_backend: str = "auto"  # hcm.model.ot backend: "torch", "keops", "pot" or "auto"
    gamma_init: float = 0.5  # initial adaptive graph coefficient gamma_m (Eq. 12), learnable
    dropout: float = 0.1  # dropout rate everywhere
    atomic_fusion: str = "tensor"  # Eq. 6: "product" (V * T) or "tensor" ((1 + V) * (1 + T) - 1)
    gcn_residual: bool = True  # Eq. 9: G = X + GCN(X), a skip around each GCN stack
    acl_temperature: float = 0.1  # temperature of the class-aware contrastive loss (Eq. 7)
    acl_bin_width: float = 1.0  # regression: scores rounded to multiples of this form ACL classes
    class_weights: tuple[float, ...] | None = None  # per-class CE weights (Eq. 16); None = equal
    regression_loss: str = "l1"  # task loss for regression: "l1" or "mse"
    balance_ratio_range: tuple[float, float] = (1e-2, 1e2)  # clamp of sg(L_task/L_acl) (Eq. 17)
    variant: str = "full"  # full, acm-only, ccm-only, no-acl, no-graph, no-cdc (Table 4)
    modalities: str = "tva"  # modality subset tva, tv, ta, va (Table 5)
    task: str = CLASSIFICATION  # filled from DatasetFacts
    num_classes: int = 7  # filled from DatasetFacts; ignored for regression
    label_range: tuple[float, float] | None = None  # filled from DatasetFacts (regression)

    def __post_init__(self) -> None:
        parse_modalities(self.modalities)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.task not in (REGRESSION, CLASSIFICATION):
            raise ValueError(f"task must be 'regression' or 'classification', got {self.task!r}")
        for name, heads in (("num_heads", self.num_heads), ("m_ctn", self.m_ctn)):
            if heads < 1 or self.d_model % heads:
                raise ValueError(f"d_model={self.d_model} must be divisible by {name}={heads}")
        if self.atomic_fusion not in ("product", "tensor"):
            raise ValueError(f"atomic_fusion must be 'product' or 'tensor', got {self.atomic_fusion!r}")
        if self.regression_loss not in ("l1", "mse"):
            raise ValueError(f"regression_loss must be 'l1' or 'mse', got {self.regression_loss!r}")
        if self.task == CLASSIFICATION and self.class_weights is not None \
                and len(self.class_weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for {self.num_classes} classes")
        if self.m_gcn < 0 or self.m_c < 1 or self.acl_temperature <= 0 or self.ot_eps <= 0:
            raise ValueError("need m_gcn >= 0, m_c >= 1, acl_temperature > 0 and ot_eps > 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> ModelConfig:
        """Build from a JSON object; unknown keys raise with the list of known ones."""
        _check_keys(cls, data, source)
        values = dict(data)
        for key in ("class_weights", "label_range", "balance_ratio_range"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists) that ``from_dict`` reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def for_dataset(self, facts: DatasetFacts, dims: dict[str, int]) -> ModelConfig:
        """A copy with the dataset's task/classes and the input widths read from the cache."""
        return dataclasses.replace(
            self, task=facts.task, num_classes=facts.num_classes, label_range=facts.label_range,
            d_text=int(dims.get("text", 0)), d_video=int(dims.get("video", 0)),
            d_audio=int(dims.get("audio", 0)),
        )

    @property
    def modality_names(self) -> tuple[str, ...]:
        """The modalities this configuration uses, canonical order."""
        return parse_modalities(self.modalities)

    @property
    def input_dims(self) -> dict[str, int]:
        return {"text": self.d_text, "video": self.d_video, "audio": self.d_audio}

    @property
    def uses_acm(self) -> bool:
        """Atomic-level correlation modelling (Eq. 4-7)."""
        return self.variant != "ccm-only"

    @property
    def uses_ccm(self) -> bool:
        """Composition-level correlation modelling (Eq. 8-15)."""
        return self.variant != "acm-only"

    @property
    def uses_acl(self) -> bool:
        """Atomic-level contrastive loss (Eq. 7) in the objective."""
        return self.uses_acm and self.variant != "no-acl"

    @property
    def uses_gcn(self) -> bool:
        """Graph learning (Eq. 8-10); ``no-graph`` feeds ACM features straight to the OT."""
        return self.uses_ccm and self.variant != "no-graph"

    @property
    def uses_ot(self) -> bool:
        """Composition-level distribution constraint (Eq. 11-12 and the cost fusion of Eq. 15)."""
        return self.uses_ccm and self.variant != "no-cdc"

    @property
    def output_dim(self) -> int:
        return 1 if self.task == REGRESSION else self.num_classes

