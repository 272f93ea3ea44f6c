"""Search spaces of ``hcm tune``: JSON files of Optuna distributions, MMSA's tune configs, grids.

A space maps a setting name, as ``hcm train --set`` takes it (``lr``, ``dropout``,
``model.d_model``, ``model.xi``), to a distribution::

    {"lr":      {"type": "float", "low": 5e-5, "high": 1e-3, "log": true},
     "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
     "m_gcn":   {"type": "int", "low": 1, "high": 8},
     "d_model": {"type": "categorical", "choices": [128, 256]},
     "num_heads": [4, 8]}

A bare list is a categorical choice, as in the MMSA framework's ``config_tune.json``; that
file's layout (``{"<model>": {"commonParams": ..., "debugParams": {"d_paras": [...], name:
[choices], ...}}}``) is read too: its ``debugParams`` lists become categorical choices.
Choices that are lists or objects (``[0.01, 100]``) are offered to Optuna as their JSON text
and turned back into values for the run.

Shipped spaces: ``configs/tune/<dataset>.json`` (the values the paper does not give, the
``hcm_choices`` of ``configs/hcmnet/<dataset>.json``, plus lr and dropout).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hcm.core.configs import configs_dir
from hcm.core.errors import UsageError
from hcm.core.files import read_json_object

TYPES = ("float", "int", "categorical")
SPEC_KEYS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
             "categorical": {"type", "choices"}}
SCALARS = (type(None), bool, int, float, str)


@dataclass
class SearchSpace:
    """Optuna distributions by setting name; ``encoded`` names the categorical settings whose
    choices are offered as JSON text."""

    distributions: dict[str, BaseDistribution]
    encoded: set[str] = field(default_factory=set)
    source: str = ""

    def settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's parameters as settings (JSON text turned back into lists and objects)."""
        return {name: json.loads(value) if name in self.encoded else value for name, value in params.items()}


def categorical(name: str, choices: list[Any], space: SearchSpace, source: str) -> CategoricalDistribution:
    if not isinstance(choices, list) or not choices:
        raise UsageError(f"{source}: {name!r} needs a non-empty list of choices, got {choices!r}")
    if all(isinstance(c, SCALARS) for c in choices):
        return CategoricalDistribution(choices)
    space.encoded.add(name)
    return CategoricalDistribution([json.dumps(c) for c in choices])


def distribution(name: str, spec: Any, space: SearchSpace, source: str) -> BaseDistribution:
    """One entry of a space file as an Optuna distribution (a bad entry names itself)."""
    if isinstance(spec, list):
        return categorical(name, spec, space, source)
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise UsageError(f"{source}: {name!r} must be a list of choices or an object with \"type\" one of "
                         f"{', '.join(TYPES)}; got {spec!r}")
    kind = spec["type"]
    unknown = sorted(set(spec) - SPEC_KEYS[kind])
    if unknown:
        raise UsageError(f"{source}: {name!r} ({kind}) has unknown key(s) {unknown}; known: {sorted(SPEC_KEYS[kind])}")
    if kind == "categorical":
        return categorical(name, spec.get("choices"), space, source)
    try:
        low, high = spec["low"], spec["high"]
        log, step = bool(spec.get("log", False)), spec.get("step")
        if kind == "int":
            return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{source}: {name!r} ({kind}) is not a valid range: {error}") from error


def mmsa_params(data: dict[str, Any]) -> dict[str, Any] | None:
    """The ``debugParams`` of an MMSA tune config (at the top or under one model's name), else None."""
    if "debugParams" in data:
        found = data["debugParams"]
    else:
        nested = [v["debugParams"] for v in data.values() if isinstance(v, dict) and "debugParams" in v]
        if len(nested) != 1:
            return None
        found = nested[0]
    return {k: v for k, v in found.items() if k != "d_paras"}


def parse_space(data: dict[str, Any], source: str) -> SearchSpace:
    """A space from a parsed JSON object (hcm's layout or MMSA's)."""
    entries = mmsa_params(data) or data
    if not entries:
        raise UsageError(f"{source}: the search space is empty; give at least one setting")
    space = SearchSpace({}, set(), source)
    for name, spec in entries.items():
        space.distributions[name] = distribution(name, spec, space, source)
    return space


def load_space(path: Path) -> SearchSpace:
    """A space file (``--space FILE``)."""
    return parse_space(read_json_object(path, "search space"), str(path))


def shipped_space_file(dataset: str) -> Path:
    """``configs/tune/<dataset>.json``; a dataset without one is a clear error."""
    path = configs_dir() / "tune" / f"{dataset}.json"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        raise UsageError(f"no shipped search space for dataset {dataset!r} (shipped: {', '.join(known)}); "
                         f"pass one with --space FILE (docs/training.md, tune)")
    return path


def shipped_space(dataset: str) -> SearchSpace:
    """The shipped space of ``dataset``."""
    return load_space(shipped_space_file(dataset))


def parse_value(text: str) -> Any:
    """``4`` -> 4, ``0.1`` -> 0.1, ``true`` -> True, anything else stays text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def grid_space(pairs: list[str]) -> dict[str, list[Any]]:
    """``["m_gcn=1,2,4", "m_c=2,8"]`` -> ``{"m_gcn": [1, 2, 4], "m_c": [2, 8]}`` for Optuna's grid sampler."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        name, sep, values = pair.partition("=")
        choices = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not choices:
            raise UsageError(f"--grid {pair!r}: write NAME=V1,V2,... (e.g. --grid m_gcn=1,2,4,6,8)")
        if name.strip() in grid:
            raise UsageError(f"--grid names {name.strip()!r} twice")
        grid[name.strip()] = choices
    return grid
