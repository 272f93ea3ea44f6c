"""Typed settings from JSON: the shipped config folder and the unknown-key check every
``from_dict`` uses."""

from __future__ import annotations

import dataclasses
import json
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
