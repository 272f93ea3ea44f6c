"""Search spaces of hcm tune: hcm's JSON layout, MMSA's tune configs, grids, the shipped spaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hcm.core.errors import UsageError
from hcm.training.search_space import grid_space, load_space, parse_space, shipped_space
from hcm.training.settings import load_hparams

# Choices the shipped spaces leave fixed: the solver backend (the same plan on every backend), Eq. 12's
# masses (no measured difference, benchmarks/RESULTS.md) and the training engineering the paper does not
# give (schedule, warm-up, clipping, early stopping, precision, stream standardisation); a --space file
# can search them. Switch parameters (acl_temperature, balance_ratio_range) are not choices at all.
NOT_SEARCHED = {"ot_backend", "ot_mass", "scheduler", "warmup_epochs", "grad_clip", "patience", "amp",
                "standardise_streams", "weight_decay"}  # weight_decay: inert under the paper's weight_penalty


def test_every_kind_of_entry() -> None:
    space = parse_space({
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
        "m_gcn": {"type": "int", "low": 1, "high": 8, "step": 1},
        "d_model": {"type": "categorical", "choices": [128, 256]},
        "num_heads": [4, 8],
        "balance_ratio_range": [[0.01, 100.0], [0.1, 10.0]],
    }, "space.json")
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert d["m_gcn"] == IntDistribution(1, 8)
    assert d["d_model"] == CategoricalDistribution([128, 256]) and d["num_heads"] == CategoricalDistribution([4, 8])
    assert space.encoded == {"balance_ratio_range"}
    assert space.settings({"balance_ratio_range": "[0.1, 10.0]", "num_heads": 4}) == \
        {"balance_ratio_range": [0.1, 10.0], "num_heads": 4}


def test_mmsa_tune_configs_become_categorical_choices(tmp_path: Path) -> None:
    mmsa = {"hcmnet": {"commonParams": {"need_data_aligned": False},
                       "debugParams": {"d_paras": ["lr", "dropout"], "lr": [1e-4, 5e-4], "dropout": [0.1, 0.2]}}}
    path = tmp_path / "config_tune.json"
    path.write_text(json.dumps(mmsa))
    space = load_space(path)
    assert space.distributions == {"lr": CategoricalDistribution([1e-4, 5e-4]),
                                   "dropout": CategoricalDistribution([0.1, 0.2])}


@pytest.mark.parametrize("entry, message", [
    ({"type": "normal", "low": 0, "high": 1}, "must be a list of choices or an object"),
    ({"type": "float", "low": 0}, "not a valid range"),
    ({"type": "float", "low": 1, "high": 0}, "not a valid range"),
    ({"type": "int", "low": 1, "high": 4, "scale": 2}, "unknown key"),
    ({"type": "categorical", "choices": []}, "non-empty list"),
])
def test_bad_entries_name_themselves(entry: dict, message: str) -> None:
    with pytest.raises(UsageError, match=rf"space\.json: 'lr'.*{message}"):
        parse_space({"lr": entry}, "space.json")


def test_grids() -> None:
    assert grid_space(["m_gcn=1,2,4", "reading=paper,hcm"]) == {"m_gcn": [1, 2, 4], "reading": ["paper", "hcm"]}
    for bad in (["m_gcn"], ["m_gcn="], ["m_gcn=1", "m_gcn=2"], ["=1,2"]):
        with pytest.raises(UsageError, match="--grid"):
            grid_space(bad)


@pytest.mark.parametrize("dataset", ["mosei", "meld", "iemocap"])
def test_shipped_spaces_search_the_values_the_paper_leaves_out(dataset: str) -> None:
    space = shipped_space(dataset)
    choices = set(load_hparams(dataset)["hcm_choices"])
    assert choices - NOT_SEARCHED <= set(space.distributions)
    assert set(space.distributions) <= choices | {"lr", "dropout"}
    assert {"lr", "dropout"} <= set(space.distributions)


def test_a_dataset_without_a_shipped_space_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="no shipped search space for dataset 'mosi'.*--space FILE"):
        shipped_space("mosi")
