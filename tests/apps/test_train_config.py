"""`hcm train --config FILE`: a settings file read as overrides, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hcm.apps.train import config_overrides
from hcm.core.errors import UsageError


def test_sections_become_prefixed_overrides(tmp_path: Path) -> None:
    path = tmp_path / "best-config.json"
    path.write_text(json.dumps({"model": {"d_model": 64, "dropout": 0.2}, "train": {"lr": 3e-4},
                                "tuned": {"study": "meld-paper", "trial": 7}}))
    assert config_overrides(path) == {"model.d_model": 64, "model.dropout": 0.2, "train.lr": 3e-4}


@pytest.mark.parametrize("content", [{"modle": {"d_model": 64}}, {"model": [1, 2]}, [1, 2]])
def test_a_file_of_another_shape_is_refused(tmp_path: Path, content) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UsageError, match=f"settings file {path}: expected a JSON object"):
        config_overrides(path)
