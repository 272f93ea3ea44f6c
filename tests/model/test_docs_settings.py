"""The docs name only switches, settings and defaults that exist.

- docs/model.md's switch table lists exactly ``READING_SWITCHES``, each with its ``paper`` and
  ``hcm`` values.
- Every ``--set key=value`` in README.md and docs/*.md names a train or model setting, and a
  switch's value is one of its choices; so does every backticked ``switch=value``.
- Every "`setting`, default X" / "`setting` (default X" names a setting whose default is X.
- Every bold Interpretations heading of docs/model.md that names a setting in brackets names one
  that exists.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from hcm.model.config import READING_SWITCHES, SWITCHES_BY_NAME, ModelConfig
from hcm.training.settings import TrainConfig

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}
TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
SET = re.compile(r"--set (?:(?:train|model)\.)?([a-z_]+)=([^\s`]+)")
BACKTICK_ASSIGN = re.compile(r"`([a-z_]+)=\"?([^\"`]+)\"?`")
DEFAULT = re.compile(r"`([a-z_]+)`(?:,| \() ?default (\[[^\]]*\]|[^\s,;):]+)")
HEADING = re.compile(r"^\*\*[^*]*\(`([a-z_]+)`\)\.?\*\*", re.M)
TABLE_ROW = re.compile(r"^\| `([a-z_]+)` \| `([^`]+)` \| `([^`]+)` \|", re.M)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _default(name: str):
    field = MODEL_FIELDS.get(name) or TRAIN_FIELDS[name]
    return field.default


def problems(text: str) -> list[str]:
    """What a markdown text names that does not exist."""
    found = []
    for key, value in SET.findall(text):
        if key == "key":
            continue  # the generic `--set key=value`
        if key not in MODEL_FIELDS and key not in TRAIN_FIELDS:
            found.append(f"--set {key}: no such setting")
        elif key in SWITCHES_BY_NAME and _value(value) not in SWITCHES_BY_NAME[key].choices:
            found.append(f"--set {key}={value}: not one of {SWITCHES_BY_NAME[key].choices}")
    for key, value in BACKTICK_ASSIGN.findall(text):
        if key in SWITCHES_BY_NAME and _value(value) not in SWITCHES_BY_NAME[key].choices:
            found.append(f"`{key}={value}`: not one of {SWITCHES_BY_NAME[key].choices}")
    for key, value in DEFAULT.findall(text):
        if key in MODEL_FIELDS or key in TRAIN_FIELDS:
            default = _default(key)
            default = list(default) if isinstance(default, tuple) else default
            named = {"on": True, "off": False}.get(value, _value(value)) if isinstance(default, bool) else _value(value)
            if named != default and str(named) != str(default):
                found.append(f"`{key}` default {value}: the code's default is {default!r}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_existing_settings_and_defaults(doc: Path) -> None:
    assert problems(doc.read_text()) == []


def test_the_switch_table_is_the_code_s() -> None:
    text = (REPO / "docs" / "model.md").read_text()
    rows = {name: (paper, hcm) for name, paper, hcm in TABLE_ROW.findall(text) if name in SWITCHES_BY_NAME
            or name.endswith(("_form", "_fusion", "_pool", "_update", "_balance", "_mapping", "_scale", "_count"))}
    expected = {s.name: (json.dumps(s.paper) if isinstance(s.paper, bool) else s.paper,
                         json.dumps(s.hcm) if isinstance(s.hcm, bool) else s.hcm) for s in READING_SWITCHES}
    assert rows == expected
    for name in HEADING.findall(text):
        assert name in MODEL_FIELDS, f"docs/model.md has a heading for `{name}`, which is no model setting"


def test_the_checks_catch_stale_names() -> None:
    assert problems("--set gcn_skip=true") == ["--set gcn_skip: no such setting"]
    assert problems("`acl_form=supcon`")[0].startswith("`acl_form=supcon`: not one of")
    assert problems("`gamma_init`, default 0.7") == ["`gamma_init` default 0.7: the code's default is 0.5"]
    assert problems("--set reading=paper --set train.patience=5 `encoder_layers`, default 1") == []
    assert problems("`standardise_streams` (default on: ...) `balance_ratio_range` (default [1e-2, 1e2])") == []
    assert problems("`balance_ratio_range` (default [1e-3, 1e2])") != []
