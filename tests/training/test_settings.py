"""Shipped configs and the typed config loaders of HCMNet and the training harness."""

from __future__ import annotations

import configparser
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hcm
from hcm.core.configs import configs_dir
from hcm.model.config import READING_SWITCHES, ModelConfig, parse_modalities
from hcm.model.hcmnet import build_model
from hcm.training.settings import (
    DatasetFacts,
    TrainConfig,
    inverse_frequency_weights,
    load_dataset_facts,
    load_hparams,
    with_class_weights,
)

DATASETS = ("mosei", "meld", "iemocap", "sample")


@pytest.mark.parametrize("name", DATASETS)
def test_every_shipped_dataset_builds_a_model(name: str) -> None:
    facts = load_dataset_facts(name)
    hparams = load_hparams(name)
    cfg = ModelConfig.from_dict(hparams["model"]).for_dataset(facts, {"text": 6, "video": 5, "audio": 4})
    cfg = with_class_weights(cfg, np.arange(40) % max(1, facts.num_classes))
    assert cfg.output_dim == (1 if facts.task == "regression" else facts.num_classes)
    assert {"optimizer", "lr", "batch_size", "epochs"} <= set(hparams["train"])
    assert cfg.weight_penalty == "l2-loss" or "weight_decay" in hparams["train"]  # stated where it acts
    if name != "sample":
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        assert model.cfg is cfg and model.cfg.dropout == hparams["model"]["dropout"]
        gen = torch.Generator().manual_seed(0)
        batch = {}
        for modality, dim in {"text": 6, "video": 5, "audio": 4}.items():
            batch[modality] = torch.randn(2, 3, dim, generator=gen)  # (B, N, D)
            batch[f"{modality}_mask"] = torch.tensor([[True, True, True], [True, False, False]])
        batch["text_adj"] = torch.zeros(2, 3, 3)
        with torch.no_grad():
            prediction = model(batch).prediction
        expected = (2,) if facts.task == "regression" else (2, facts.num_classes)
        assert prediction.shape == expected and torch.isfinite(prediction).all()


def test_paper_settings_and_facts() -> None:
    for name in ("mosei", "meld", "iemocap"):
        model, train = load_hparams(name)["model"], load_hparams(name)["train"]
        assert (model["m_gcn"], model["m_c"], model["dropout"]) == (4, 8, 0.1)
        assert (train["optimizer"], train["lr"], train["batch_size"], train["epochs"]) == ("adamw", 2e-4, 64, 100)
    assert load_hparams("mosei")["model"]["regression_loss"] == "l1"
    assert load_dataset_facts("meld").num_classes == 7 and load_dataset_facts("iemocap").num_classes == 6
    mosei = load_dataset_facts("mosei")
    facts = (mosei.task, mosei.key_metric, mosei.higher_is_better, mosei.label_range)
    assert facts == ("regression", "mae", False, (-3.0, 3.0))
    assert mosei.streams["audio"] == ("esresnext", "mel")


def test_configs_are_package_data() -> None:
    assert configs_dir() == Path(hcm.__file__).parent / "configs"
    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    patterns = parser["options.package_data"]["hcm"]
    assert "configs/datasets/*.json" in patterns and "configs/hcmnet/*.json" in patterns


def test_unknown_keys_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown ModelConfig key\(s\) \['dmodel'\]"):
        ModelConfig.from_dict({"dmodel": 8})
    with pytest.raises(ValueError, match="variant must be one of"):
        ModelConfig(variant="no-ot")
    with pytest.raises(ValueError, match="atomic_fusion must be"):
        ModelConfig(atomic_fusion="sum")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, num_heads=8)
    with pytest.raises(ValueError, match="class_weights"):
        ModelConfig(num_classes=3, class_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown DatasetFacts key"):
        DatasetFacts.from_dict({"name": "x", "classes": 3})
    with pytest.raises(FileNotFoundError, match="known names"):
        load_dataset_facts("no-such-dataset")


@pytest.mark.parametrize("value,expected", [
    ("tva", ("text", "video", "audio")), ("avt", ("text", "video", "audio")),
    ("va", ("video", "audio")), ("ta", ("text", "audio")),
])
def test_modalities_parse(value: str, expected: tuple[str, ...]) -> None:
    assert parse_modalities(value) == expected


@pytest.mark.parametrize("value", ["t", "", "tvx", "ttv"])
def test_bad_modalities(value: str) -> None:
    with pytest.raises(ValueError, match="modalities"):
        parse_modalities(value)


def test_round_trip_and_variant_switches() -> None:
    cfg = ModelConfig(class_weights=(1.0,) * 7, label_range=(-3.0, 3.0))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    switches = {v: (c.uses_acm, c.uses_ccm, c.uses_acl, c.uses_gcn, c.uses_ot)
                for v in ("full", "acm-only", "ccm-only", "no-acl", "no-graph", "no-cdc")
                for c in [dataclasses.replace(cfg, variant=v)]}
    assert switches == {
        "full": (True, True, True, True, True), "acm-only": (True, False, True, False, False),
        "ccm-only": (False, True, False, True, True), "no-acl": (True, True, False, True, True),
        "no-graph": (True, True, True, False, True), "no-cdc": (True, True, True, True, False),
    }


# What the paper does not mention, set to "none" or "constant" and listed among hcm's choices.
UNSTATED_TRAIN = {"scheduler": "constant", "warmup_epochs": 0.0, "grad_clip": 0.0, "patience": 0, "amp": "off"}


@pytest.mark.parametrize("name", ["mosei", "meld", "iemocap"])
def test_paper_configs_enable_no_hcm_only_switch(name: str) -> None:
    hparams = load_hparams(name)
    cfg = ModelConfig.from_dict(hparams["model"])
    assert cfg.reading == "paper"
    assert cfg.departures() == [], f"configs/hcmnet/{name}.json enables hcm-only switches {cfg.departures()}"
    assert cfg.switches() == {sw.name: sw.paper for sw in READING_SWITCHES}
    train = TrainConfig.from_dict(hparams["train"])
    assert {key: getattr(train, key) for key in UNSTATED_TRAIN} == UNSTATED_TRAIN
    assert set(UNSTATED_TRAIN) | {"standardise_streams", "weight_decay", "xi", "d_model"} <= set(hparams["hcm_choices"])
    assert (train.lr, train.batch_size, train.epochs) == (2e-4, 64, 100)
    assert hparams["model"].get("class_weights") == (None if name == "mosei" else "inverse_frequency")


def test_a_switch_departing_from_the_paper_is_caught() -> None:
    cfg = ModelConfig.from_dict({"reading": "paper", "gcn_residual": True})
    assert cfg.departures() == ["gcn_residual"] and cfg.atomic_fusion == "product"
    assert ModelConfig(reading="hcm").departures() == [sw.name for sw in READING_SWITCHES]


def test_reading_fills_switches_and_explicit_ones_win() -> None:
    paper = ModelConfig(reading="paper", cost_fusion="softmax")
    assert (paper.node_count, paper.atomic_pool, paper.transport_update, paper.cost_fusion) == \
        ("common", "sum", "literal", "softmax")
    assert ModelConfig.from_dict(paper.to_dict()) == paper  # config.json holds the resolved values
    assert paper.to_dict()["objective_balance"] == "literal"
    with pytest.raises(ValueError, match="node_count 'native'.*needs transport_update 'text-anchored'"):
        ModelConfig(reading="paper", node_count="native")
    native = ModelConfig(reading="paper", node_count="native", transport_update="text-anchored")
    assert native.cost_fusion == "product"  # C' P^u on the text rows is defined for any node counts
    with pytest.raises(ValueError, match="reading must be one of"):
        ModelConfig(reading="papers")
    with pytest.raises(ValueError, match="class_weights must be"):
        ModelConfig(class_weights="balanced")


def test_inverse_frequency_weights_come_from_the_training_labels() -> None:
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert weights == pytest.approx((6 / 9, 2.0, 1.0, 1.0))  # n / (k n_c) over the 3 present classes
    facts = DatasetFacts("x", "classification", 4, ("a", "b", "c", "d"), "accuracy", True, None,
                         {"text": ("t",), "video": ("v",), "audio": ("a",)})
    cfg = ModelConfig(class_weights="inverse_frequency").for_dataset(facts, {"text": 3, "video": 3, "audio": 3})
    assert with_class_weights(cfg, np.array([0, 0, 0, 1, 2, 2])).class_weights == pytest.approx(weights)


def _write_hparams(folder: Path, data: dict) -> None:
    (folder / "hcmnet").mkdir(parents=True)
    (folder / "hcmnet" / "x.json").write_text(json.dumps(data))


@pytest.mark.parametrize("choices, message", [
    ({"model": {"dropout": 0.2}, "reasons": {"dropout": "r"}}, "both as the paper's model settings"),
    ({"model": {"gcn_residual": True}, "reasons": {"gcn_residual": "r"}}, "reading switches"),
    ({"model": {"acl_temperature": 0.2}, "reasons": {"acl_temperature": "r"}}, "parameters of reading switches"),
    ({"model": {}, "reasons": {}, "fixed": {"node_resampling": ""}}, "built-in choice to the reason"),
    ({"model": {"eta": 0.3}, "reasons": {}}, "missing for \\['eta'\\]"),
    ({"model": {"eta": 0.3}, "reasons": {"eta": "r", "ot_eps": "r"}}, "stray: \\['ot_eps'\\]"),
    ({"optimizer": {}}, "'hcm_choices' must be an object"),
])
def test_hcm_choices_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, choices: dict,
                                 message: str) -> None:
    _write_hparams(tmp_path, {"model": {"reading": "paper", "dropout": 0.1}, "train": {}, "hcm_choices": choices})
    monkeypatch.setattr("hcm.training.settings.configs_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=message):
        load_hparams("x")


def test_a_cache_that_records_its_facts_needs_no_shipped_file() -> None:
    from types import SimpleNamespace

    from hcm.training.settings import facts_for_cache

    recorded = {"name": "custom", "task": "classification", "num_classes": 2, "class_names": ["no", "yes"],
                "key_metric": "weighted_f1", "higher_is_better": True, "label_range": None,
                "streams": {"text": ["roberta"], "video": ["efficientnet"], "audio": ["mel"]}, "metrics": ""}
    facts = facts_for_cache(SimpleNamespace(dataset="custom", recipe={"facts": recorded}))
    assert facts.class_names == ("no", "yes") and facts.streams["audio"] == ("mel",)
    declared = {"text": ["csd_text"], "video": ["csd_video"], "audio": ["csd_audio"]}
    imported = facts_for_cache(SimpleNamespace(dataset="custom", recipe={"facts": recorded, "streams": declared}))
    assert imported.streams["audio"] == ("csd_audio",) and imported.class_names == ("no", "yes")
    with pytest.raises(FileNotFoundError, match="no datasets config"):
        facts_for_cache(SimpleNamespace(dataset="custom", recipe={}))
