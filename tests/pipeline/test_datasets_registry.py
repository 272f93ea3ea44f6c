"""The dataset registry, the adapter contract shared by all datasets, and the ``sample`` adapter."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import hcm.pipeline.sample
from hcm.core.workspace import Workspace
from hcm.pipeline.datasets import DatasetAdapter, dataset_names, get_dataset, register_dataset
from hcm.pipeline.datasets.base import natural_key
from hcm.pipeline.sample import SampleSummary, make_sample


def test_registry_lists_every_dataset() -> None:
    assert dataset_names() == ["custom", "iemocap", "meld", "mosei", "mosi", "sample", "sims", "simsv2"]
    with pytest.raises(KeyError, match="unknown dataset 'cmu-mosi'; known: custom, iemocap, meld, mosei, mosi"):
        get_dataset("cmu-mosi")
    assert get_dataset("MOSEI").name == "mosei"  # names are case-insensitive


@pytest.mark.parametrize("name", ["iemocap", "meld", "mosei", "sample", "mosi", "sims", "simsv2", "custom"])
def test_adapters_declare_their_task(name: str) -> None:
    adapter = get_dataset(name)
    assert isinstance(adapter, DatasetAdapter) and adapter.name == name
    assert adapter.task in ("regression", "classification")
    assert (adapter.classes is None) == (adapter.task == "regression")
    assert adapter.source


def test_a_name_cannot_be_registered_twice() -> None:
    class Other(DatasetAdapter):
        name = "mosei"
        task = "regression"

        def check_root(self, root: Path) -> None: ...

        def read(self, root: Path) -> list: ...

    with pytest.raises(ValueError, match="already registered"):
        register_dataset(Other)


def test_default_root_is_under_the_workspace(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    assert get_dataset("meld").default_root(workspace) == tmp_path / "data" / "meld"


def test_natural_key_orders_numbers_numerically() -> None:
    assert sorted(["10", "9", "b", "a", "010"], key=natural_key) == ["9", "010", "10", "a", "b"]


def test_sample_is_generated_on_first_use(
    workdir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def small_sample(dataset: str, out: Path, **options) -> SampleSummary:
        calls.append((dataset, out))
        return make_sample(dataset, out, n=12, progress=False)  # the default size, made smaller

    monkeypatch.setattr(hcm.pipeline.sample, "make_sample", small_sample)
    adapter = get_dataset("sample")
    workspace = Workspace.resolve()
    with caplog.at_level(logging.INFO):
        root = adapter.default_root(workspace)
    assert root == workdir / "data" / "sample-mosei"
    assert calls == [("mosei", root)]
    assert any("generating" in r.getMessage() for r in caplog.records)
    items = adapter.utterances(root)
    assert {u.split for u in items} == {"train", "valid", "test"}
    assert all("$_$" in u.id for u in items) and adapter.task == "regression"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert adapter.default_root(workspace) == root
    assert not any("generating" in r.getMessage() for r in caplog.records)
    assert len(calls) == 1
