"""HCMNet's settings: one frozen dataclass, a comment per field with the paper's symbol.

Shipped values live in ``configs/hcmnet/<dataset>.json`` (read by ``hcm.training.settings``);
the dataset's task, classes and label range are filled in by :meth:`ModelConfig.for_dataset`.

Two readings of the Method section (``ModelConfig.reading``):

- ``paper`` (the default): every equation as the paper writes it, all modalities on one node
  count M. Where the paper leaves a value open, hcm's choice fills it (listed with its reason
  under ``hcm_choices`` in ``configs/hcmnet/<dataset>.json``); where formula and prose
  disagree (the sign of Eq. 7), docs/model.md names the reading taken.
- ``hcm``: hcm's readings where the literal equations misbehave or are undefined for node
  sets of different sizes (docs/model.md gives the reason and the measured effect of each).

Each difference is a switch of its own (:data:`READING_SWITCHES`). A switch left unset
(``None``) takes the value of the reading; a switch given explicitly overrides it. The
switches are resolved when the config is built, so ``to_dict`` (a run's config.json) records
the values used. A switch's ``parameters`` are the fields that only act under a departing
value (``acl_temperature`` only shapes the class-contrastive Eq. 7).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from hcm.core.configs import check_keys
from hcm.core.names import CLASSIFICATION, MODALITY_LETTERS, REGRESSION

INVERSE_FREQUENCY = "inverse_frequency"  # class_weights computed from the training split
VARIANTS = ("full", "acm-only", "ccm-only", "no-acl", "no-graph", "no-cdc")
READINGS = ("paper", "hcm")


@dataclass(frozen=True)
class ReadingSwitch:
    """One place where hcm's reading departs from the equations as written."""

    name: str  # the ModelConfig field
    paper: Any  # value under reading "paper" (the equation as written)
    hcm: Any  # value under reading "hcm"
    choices: tuple[Any, ...]  # every accepted value
    equation: str  # where in the paper
    parameters: tuple[str, ...] = ()  # ModelConfig fields that act only under a departing value

    def value(self, reading: str) -> Any:
        return self.paper if reading == "paper" else self.hcm


#: The switches between the two readings, in equation order.
READING_SWITCHES: tuple[ReadingSwitch, ...] = (
    ReadingSwitch("node_count", "common", "native", ("common", "native"), "V, T, A in R^{M x d}"),
    ReadingSwitch("atomic_pool", "sum", "mean", ("sum", "mean"), "Eq. 6"),
    ReadingSwitch("atomic_fusion", "product", "tensor", ("product", "tensor"), "Eq. 6"),
    ReadingSwitch("acl_form", "cosine", "class-contrastive", ("cosine", "cosine-as-printed", "class-contrastive"),
                  "Eq. 7", ("acl_temperature", "acl_bin_width")),
    ReadingSwitch("gcn_residual", False, True, (False, True), "Eq. 9"),
    ReadingSwitch("graph_self_loops", False, True, (False, True), "Eq. 10"),
    ReadingSwitch("transport_update", "literal", "text-anchored", ("literal", "text-anchored"), "Eq. 12"),
    ReadingSwitch("pgf_attention", "shared-qk", "multihead", ("shared-qk", "multihead"), "Eq. 13"),
    ReadingSwitch("pgf_ffn", "linear", "gelu-residual", ("linear", "gelu-residual"), "Eq. 14"),
    ReadingSwitch("cost_scale", "raw", "unit-mean", ("raw", "unit-mean"), "Eq. 15"),
    ReadingSwitch("cost_fusion", "product", "softmax", ("product", "softmax"), "Eq. 15"),
    ReadingSwitch("weight_penalty", "l2-loss", "decoupled", ("l2-loss", "decoupled"), "Eq. 16"),
    ReadingSwitch("objective_balance", "literal", "balanced", ("literal", "balanced"), "Eq. 17"),
    ReadingSwitch("balance_clamp", False, True, (False, True), "Eq. 17", ("balance_ratio_range",)),
    ReadingSwitch("output_mapping", "none", "label-range", ("none", "label-range"), "prediction (regression)"),
)
SWITCHES_BY_NAME = {switch.name: switch for switch in READING_SWITCHES}
#: Marginal masses of the literal Eq. 12 (``ot_mass``): total mass 1, or mass 1 per text node.
OT_MASSES = ("unit", "node")


def checked_switch(name: str, value: Any) -> Any:
    """``value`` when it is one of the choices of reading switch ``name``, else a ValueError naming them
    (the model's parts check theirs too, so a part built outside a ModelConfig cannot fall back silently)."""
    switch = SWITCHES_BY_NAME[name]
    if value not in switch.choices:
        raise ValueError(f"{name} must be one of {switch.choices} ({switch.equation}), got {value!r}")
    return value

#: What a run saved before a setting existed was trained with (its config.json lacks the key):
#: no ``reading`` meant hcm's; the switches added later ran hcm's form under either reading.
SAVED_BEFORE = {"reading": "hcm", "acl_form": "class-contrastive", "graph_self_loops": True,
                "pgf_attention": "multihead", "pgf_ffn": "gelu-residual", "cost_scale": "unit-mean",
                "balance_clamp": True, "weight_penalty": "decoupled"}


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
    ot_mass: str = "unit"  # masses of the literal Eq. 12 (Eq. 11-12): "unit" (total mass 1) or "node" (1 per text node)
    dropout: float = 0.1  # dropout rate everywhere
    # The reading and its switches (None: the reading's value; see READING_SWITCHES).
    reading: str = "paper"  # "paper" (equations as written) or "hcm"
    node_count: str | None = None  # "common": video/audio resampled to the anchor's M nodes; "native"
    atomic_pool: str | None = None  # Eq. 6 sum over l: "sum" (as written) or "mean"
    atomic_fusion: str | None = None  # Eq. 6: "product" (V * T) or "tensor" ((1 + V) * (1 + T) - 1)
    acl_form: str | None = None  # Eq. 7: "cosine" sum of (1 - cos), "cosine-as-printed" sum of cos, "class-contrastive"
    gcn_residual: bool | None = None  # Eq. 9: G = X + GCN(X), a skip around each GCN stack
    graph_self_loops: bool | None = None  # Eq. 10: D^-1/2 (delta + I) D^-1/2 instead of D^-1/2 delta D^-1/2
    transport_update: str | None = None  # Eq. 12: "literal" G_m + gamma H^T G_m or "text-anchored"
    pgf_attention: str | None = None  # Eq. 13: "shared-qk" (one W_q, one head) or "multihead" (W_q, W_k, norms, skip)
    pgf_ffn: str | None = None  # Eq. 14: "linear" W_1(W_2 x + b_2) + b_1 or "gelu-residual" (4x wide, GELU, skip)
    cost_scale: str | None = None  # Eq. 15: C_m "raw" Euclidean or "unit-mean" (divided by its mean per sample)
    cost_fusion: str | None = None  # Eq. 15: "product" C' P^u or "softmax" softmax(-s C') P^u
    weight_penalty: str | None = None  # Eq. 16 xi ||theta||^2: "l2-loss" (in L_cce) or "decoupled" (AdamW decay)
    objective_balance: str | None = None  # Eq. 17: "literal" sg(L_acl/L_task) or "balanced" sg(L_task/L_acl)
    balance_clamp: bool | None = None  # Eq. 17: clamp the detached ratio into balance_ratio_range
    output_mapping: str | None = None  # regression score: "none" or "label-range" (centre + half width * y)
    acl_temperature: float = 0.1  # acl_form "class-contrastive": divides the cosine similarities
    acl_bin_width: float = 1.0  # acl_form "class-contrastive", regression: scores rounded to this width are classes
    class_weights: tuple[float, ...] | str | None = None  # CE weights (Eq. 16): None, a tuple, "inverse_frequency"
    xi: float = 1e-4  # xi, weight of Eq. 16's L2 term over every trainable parameter (weight_penalty "l2-loss")
    regression_loss: str = "l1"  # task loss for regression: "l1" or "mse"
    balance_ratio_range: tuple[float, float] = (1e-2, 1e2)  # balance_clamp: bounds of the detached ratio (Eq. 17)
    variant: str = "full"  # full, acm-only, ccm-only, no-acl, no-graph, no-cdc (Table 4)
    modalities: str = "tva"  # modality subset tva, tv, ta, va (Table 5)
    task: str = CLASSIFICATION  # filled from DatasetFacts
    num_classes: int = 7  # filled from DatasetFacts; ignored for regression
    label_range: tuple[float, float] | None = None  # filled from DatasetFacts (regression)

    def __post_init__(self) -> None:
        self._resolve_switches()
        parse_modalities(self.modalities)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.task not in (REGRESSION, CLASSIFICATION):
            raise ValueError(f"task must be 'regression' or 'classification', got {self.task!r}")
        for name, heads in (("num_heads", self.num_heads), ("m_ctn", self.m_ctn)):
            if heads < 1 or self.d_model % heads:
                raise ValueError(f"d_model={self.d_model} must be divisible by {name}={heads}")
        if self.ot_mass not in OT_MASSES:
            raise ValueError(f"ot_mass must be 'node' or 'unit', got {self.ot_mass!r}")
        if self.regression_loss not in ("l1", "mse"):
            raise ValueError(f"regression_loss must be 'l1' or 'mse', got {self.regression_loss!r}")
        if isinstance(self.class_weights, str) and self.class_weights != INVERSE_FREQUENCY:
            raise ValueError(f"class_weights must be a list of weights, null or {INVERSE_FREQUENCY!r}; "
                             f"got {self.class_weights!r}")
        if self.task == CLASSIFICATION and isinstance(self.class_weights, tuple) \
                and len(self.class_weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for {self.num_classes} classes")
        if self.m_gcn < 0 or self.m_c < 1 or self.acl_temperature <= 0 or self.ot_eps <= 0:
            raise ValueError("need m_gcn >= 0, m_c >= 1, acl_temperature > 0 and ot_eps > 0")
        if not 0 <= self.xi < float("inf"):
            raise ValueError(f"xi (Eq. 16) must be a number >= 0, got {self.xi!r}")

    def _resolve_switches(self) -> None:
        """Fill unset switches from the reading; check every value and their combination."""
        if self.reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {self.reading!r}")
        for switch in READING_SWITCHES:
            value = getattr(self, switch.name)
            if value is None:
                object.__setattr__(self, switch.name, switch.value(self.reading))
            else:
                checked_switch(switch.name, value)
        if self.node_count == "native" and self.transport_update == "literal":
            raise ValueError(
                "node_count 'native' (each modality its own node count) needs transport_update 'text-anchored': "
                "the literal Eq. 12 adds H_m^T G_m (text's node count) to G_m, which is only defined when all "
                "modalities have the same M nodes; set node_count 'common' or transport_update 'text-anchored'")

    def switches(self) -> dict[str, Any]:
        """The resolved value of every reading switch."""
        return {switch.name: getattr(self, switch.name) for switch in READING_SWITCHES}

    def departures(self) -> list[str]:
        """The switches whose value differs from the equations as written."""
        return [switch.name for switch in READING_SWITCHES if getattr(self, switch.name) != switch.paper]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> ModelConfig:
        """Build from a JSON object; unknown keys raise with the list of known ones."""
        check_keys(cls, data, source)
        values = dict(data)
        for key in ("class_weights", "label_range", "balance_ratio_range"):
            if values.get(key) is not None and not isinstance(values[key], str):
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    @classmethod
    def from_saved(cls, data: dict[str, Any], source: str = "<run config>") -> ModelConfig:
        """A saved run's model settings: keys it lacks take the value it was trained with
        (:data:`SAVED_BEFORE`), not today's defaults."""
        return cls.from_dict({**SAVED_BEFORE, **data}, source)

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

