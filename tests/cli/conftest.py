"""Session fixtures of the every-option table (tests/cli/test_cli_every_option.py): a workspace
with tiny caches, one trained run per purpose, a small sample corpus and MMSA file, shared by
all rows so that the table costs minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_options import SMALL, TRAIN_GIVEN, Corpus, Run, Space, hcm, import_mmsa, ok
from hcm_tiny_cache import build_cache


@pytest.fixture(scope="session")
def space(tmp_path_factory: pytest.TempPathFactory) -> Space:
    root = tmp_path_factory.mktemp("every-option") / "hcm-work"
    cache = build_cache(root / "features" / "sample" / "tiny")
    other = build_cache(root.parent / "other-cache", seed=7)
    paper = build_cache(root.parent / "mosei-paper", dataset="mosei", profile="paper", seed=3)
    return Space(root, cache, other, paper)


@pytest.fixture(scope="session")
def trained(space: Space, tmp_path_factory: pytest.TempPathFactory) -> Run:
    settings = tmp_path_factory.mktemp("settings") / "best-config.json"
    settings.write_text(json.dumps({"train": {"patience": 7}}))
    args = [arg for option, value in TRAIN_GIVEN.values() for arg in (option, str(value)) if value is not True]
    run = ok(hcm(space, "train", "--features", str(space.cache), *args, "--in-memory", "--variant", "no-acl",
                 "--modalities", "tv", "--ot-backend", "pot", "--threads", "1", "--model-size", "small",
                 "--config", str(settings), "--quiet", *SMALL))
    assert len(run.runs) == 1
    return run


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    from hcm.pipeline.sample import make_sample

    root = make_sample("mosei", tmp_path_factory.mktemp("corpus") / "mosei", n=6, seed=3, progress=False).root
    return Corpus(root, ("extract", "--dataset", "mosei", "--data-root", str(root), "--profile", "tiny",
                         "--frames", "2", "--segments", "2", "--workers", "0", "--shard-size", "3", "--quiet"))


@pytest.fixture(scope="session")
def extracted(space: Space, corpus: Corpus) -> Path:
    """The corpus's train split only, chain graphs, on the CPU."""
    out = space.root.parent / "train-only"
    ok(hcm(space, *corpus.args, "--out", str(out), "--splits", "train", "--spacy-model", "chain", "--device", "cpu"))
    return out


@pytest.fixture
def no_weight_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, with empty library caches: every paper weight is missing unless an option names it."""
    for name in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("RN50.pt", "bpe_simple_vocab_16e6.txt.gz", "efficientnet-b0-355c32eb.pth", "ESRNXFBSP.pt"):
        (weights / name).write_bytes(b"stand-in weights " + name.encode())
    return weights


@pytest.fixture(scope="session")
def mmsa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmsa_files import Spec, write_file

    return write_file(tmp_path_factory.mktemp("mmsa") / "aligned_50.pkl", Spec("mosi", aligned=True))


@pytest.fixture(scope="session")
def imported(space: Space, mmsa_file: Path) -> Path:
    out = space.root.parent / "imported"
    ok(import_mmsa(space, mmsa_file, "--out", str(out), "--shard-size", "4", "--device", "cpu",
                   "--spacy-model", "chain", "--aligned-rows", "all"))
    return out


@pytest.fixture(scope="session")
def full_run(space: Space) -> Path:
    """A run of the full model on all three modalities, for evaluate and explain."""
    (run,) = ok(hcm(space, "train", "--epochs", "1", "--seed", "11", "--features", str(space.cache), "--quiet",
                    *SMALL)).runs
    return run
