"""One ``hcm train`` reads the cache's manifest once, opens each split's reader once (the stream
statistics come through the train reader), and joins the process group once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.apps import train as train_app
from hcm.cache import manifest, reader
from hcm.cli import app
from hcm.training import trainer

runner = CliRunner()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts manifest reads, cache readers opened and distributed set-ups."""
    counts: Counter = Counter()

    def counted(name: str, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(manifest, "read_manifest", counted("manifest", manifest.read_manifest))
    monkeypatch.setattr(reader.FeatureCache, "_build_index", counted("reader", reader.FeatureCache._build_index))
    setup = counted("distributed", train_app.setup_distributed)
    monkeypatch.setattr(train_app, "setup_distributed", setup)
    monkeypatch.setattr(trainer, "setup_distributed", setup)
    return counts


def test_hcm_train_reads_the_manifest_once(calls: Counter, workdir: Path, tiny_cache) -> None:
    tiny_cache(workdir / "features" / "sample" / "tiny")
    calls.clear()
    result = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "16", "--quiet",
                                 "--model-factory", "hcm_tiny_model:TinyNet"])
    assert result.exit_code == 0, result.output
    assert len(list((workdir / "runs" / "sample").iterdir())) == 1
    assert calls["manifest"] == 1
    assert calls["distributed"] == 1
    assert calls["reader"] == 2  # train and valid; no separate pass for the stream statistics
