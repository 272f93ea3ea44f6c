"""HCMNet's settings: one frozen dataclass, a comment per field with the paper's symbol.

Shipped values live in ``configs/hcmnet/<dataset>.json`` (read by ``hcm.training.settings``);
the dataset's task, classes and label range are filled in by :meth:`ModelConfig.for_dataset`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from hcm.core.configs import check_keys
from hcm.core.names import CLASSIFICATION, MODALITY_LETTERS, REGRESSION

VARIANTS = ("full", "acm-only", "ccm-only", "no-acl", "no-graph", "no-cdc")


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
        check_keys(cls, data, source)
        values = dict(data)
        for key in ("class_weights", "label_range", "balance_ratio_range"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists) that ``from_dict`` reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def for_dataset(self, facts: Any, dims: dict[str, int]) -> ModelConfig:
        """A copy with the dataset's task/classes and the input widths read from the cache.

        ``facts`` is anything with ``task``, ``num_classes`` and ``label_range`` (the training
        harness passes its ``DatasetFacts``).
        """
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

