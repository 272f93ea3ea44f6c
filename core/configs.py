"""Typed settings from JSON: the shipped config folder and the unknown-key check every
``from_dict`` uses."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

from hcm.core.errors import UsageError


def configs_dir() -> Path:
    """The folder of shipped JSON configs (package data ``hcm/configs``)."""
    return Path(__file__).resolve().parent.parent / "configs"


def check_keys(cls: type, data: Mapping[str, Any], source: str, ignored: Iterable[str] = ()) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls`` (nor ``ignored``).

    The message names the unknown keys, where they came from and the known ones, so a typo in
    a config file or a ``--set`` points at itself.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known - set(ignored))
    if unknown:
        raise UsageError(f"unknown {cls.__name__} key(s) {unknown} in {source}; known keys: {sorted(known)}")


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "variant=no-acl"]`` -> values parsed as JSON where they are JSON, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {pair!r} must look like key=value (e.g. --set dropout=0.2)")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def check_value(cls: type, name: str, value: Any, source: str) -> None:
    """Refuse a ``value`` whose JSON type does not fit the field ``name`` of the dataclass ``cls``
    (``--set dropout=abc`` for a float): a clear error instead of a TypeError deep in the model."""
    hint = typing.get_type_hints(cls).get(name)
    allowed = _json_types(hint)
    if allowed is None or isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return
    names = sorted({_TYPE_NAMES[t] for t in allowed if not (t is int and float in allowed)})
    raise UsageError(f"{source} {name}={json.dumps(value)}: must be {' or '.join(names)}, not "
                     f"{_TYPE_NAMES.get(type(value), type(value).__name__)} (e.g. --set {name}={_EXAMPLES[names[0]]})")


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
               tuple: "a list", type(None): "null", dict: "an object"}
_EXAMPLES = {"an integer": "2", "a number": "0.2", "true or false": "true", "a string": "name", "a list": "[1,2]",
             "null": "null"}


def _json_types(hint: Any) -> tuple[type, ...] | None:
    """The Python types a JSON value may have for a field annotated ``hint``; None: not checked."""
    if hint is None:
        return None
    if hint is float:
        return (float, int)
    if hint in (int, bool, str):
        return (hint,)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return (list, tuple)
    if origin in (typing.Union, types.UnionType):
        parts = [_json_types(arg) for arg in typing.get_args(hint)]
        if any(part is None for part in parts):
            return None
        return tuple(t for part in parts for t in part)
    if hint is type(None):
        return (type(None),)
    return None
