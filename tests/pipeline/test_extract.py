"""hcm extract on a synthetic MOSEI corpus with faults: failures, masks, resume, shards, strict, offline."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hcm.cache import CacheWriter, FeatureCache
from hcm.core.errors import UsageError
from hcm.pipeline.datasets import get_dataset
from hcm.pipeline.decoding import MediaDecoder, default_workers, inference_threads
from hcm.pipeline.extract import ExtractionError, build_encoders, extract
from hcm.pipeline.profiles import MissingWeightsError, WeightOptions, get_profile, resolve_weights
from hcm.pipeline.sample import make_sample
from hcm.pipeline.shards import shard_assignment

FAST = dict(profile="tiny", frames=2, segments=2, batch_size=4, shard_size=3, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("corpus") / "mosei"
    summary = make_sample("mosei", root, n=9, seed=3, faults=True, progress=False)
    return root, {fault.kind: fault.item for fault in summary.faults}


@pytest.fixture(scope="module")
def clean(corpus: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "cache"
    extract("mosei", corpus[0], out, workers=1, **FAST)
    return out


def contents(directory: Path) -> tuple[dict, list, list]:
    """Everything a cache holds, comparable with ==: items by id, the failures and the masked modalities."""
    with FeatureCache(directory) as cache:
        items = {}
        for i in range(len(cache)):
            item = cache[i]
            items[item.id] = (item.split, item.label, item.masks, item.notes,
                              {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in item.features.items()})
    manifest = json.loads((directory / "manifest.json").read_text())
    return (items, sorted((f["id"], f["reason"], f["detail"]) for f in manifest["failures"]),
            sorted((m["id"], m["modality"], m["reason"], m["detail"]) for m in manifest["masked"]))


@pytest.mark.slow
def test_bad_media_mask_their_modalities_and_keep_the_item(clean: Path, corpus: tuple[Path, dict]) -> None:
    _, faults = corpus
    items, failures, masked = contents(clean)
    assert failures == [] and len(items) == 9  # every labelled utterance is kept
    reasons = {(item_id, modality): reason for item_id, modality, reason, _ in masked}
    for fault, reason in (("missing_clip", "file missing"), ("truncated_media", "cannot decode")):
        item = items[faults[fault]]
        assert item[2] == {"text": True, "video": False, "audio": False}
        assert reasons[faults[fault], "video"] == reason and reasons[faults[fault], "audio"] == reason
        assert reason in item[3]["video"] and item[4]["clip_image"][1][0] == 0 and item[4]["mel"][1][0] == 0
        assert item[4]["roberta"][1][0] > 0  # the text is extracted
    no_audio = items[faults["no_audio"]]
    assert no_audio[2]["audio"] is False and no_audio[2]["video"] is True
    assert "no audio stream" in no_audio[3]["audio"] and reasons[faults["no_audio"], "audio"] == "no audio stream"
    assert no_audio[4]["esresnext"][1][0] == 0 and no_audio[4]["mel"][1][0] == 0
    assert no_audio[4]["clip_image"][1][0] == 2  # video kept: two sampled frames
    empty = items[faults["empty_text"]]
    assert empty[2]["text"] is False and empty[4]["roberta"][1][0] == 0
    assert reasons[faults["empty_text"], "text"] == "empty transcript"
    assert len(masked) == 6


@pytest.mark.slow
def test_streams_and_recipe(clean: Path) -> None:
    with FeatureCache(clean) as cache:
        assert cache.meta.profile == "tiny"
        assert set(cache.specs) == {"roberta", "roberta_current", "token_word", "text_edges", "clip_text",
                                    "efficientnet", "clip_image", "esresnext", "mel"}
        recipe = cache.meta.recipe
        assert recipe["profile"]["sampling"]["frames"] == 2 and recipe["dataset"] == "mosei"
        item = next(cache[i] for i in range(len(cache)) if all(cache[i].masks.values()))
    n = len(item.features["roberta"])
    assert item.features["roberta_current"].shape == (n,) and item.features["token_word"].shape == (n,)
    rows = np.flatnonzero(item.features["roberta_current"])
    assert rows.size and np.isin(item.features["text_edges"], rows).all()
    assert item.features["clip_text"].shape[0] == 1 and item.features["esresnext"].shape[0] == 2


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_cache(clean: Path, corpus: tuple[Path, dict], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cache"
    original = CacheWriter.write_shard_once

    def crash_on_second(self: CacheWriter, k: int, *args: list) -> bool:
        if k == 1:
            raise KeyboardInterrupt("killed")
        return original(self, k, *args)

    monkeypatch.setattr(CacheWriter, "write_shard_once", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        extract("mosei", corpus[0], out, workers=0, **FAST)
    monkeypatch.setattr(CacheWriter, "write_shard_once", original)
    summary = extract("mosei", corpus[0], out, workers=0, **FAST)
    assert summary.shards.resumed == 1 and summary.shards.mine == 3
    assert contents(out) == contents(clean)


@pytest.mark.slow
def test_two_shard_workers_give_the_same_cache(clean: Path, corpus: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = extract("mosei", corpus[0], out, workers=0, num_shards=2, shard_index=0, **FAST)
    second = extract("mosei", corpus[0], out, workers=0, num_shards=2, shard_index=1, **FAST)
    assert (first.shards.mine, second.shards.mine) == (2, 1)
    assert contents(out) == contents(clean)


@pytest.mark.slow
def test_prepared_inputs_are_c_contiguous_in_process(corpus: tuple[Path, dict]) -> None:
    """Worker results arrive C-contiguous (pickled); in-process ones must match, or torch picks
    other kernels (channels-last convolutions) and the cache depends on --workers."""
    profile = get_profile("tiny", 2, 2, None)
    encoders = build_encoders(profile, resolve_weights(profile, WeightOptions()), torch.device("cpu"))
    decoder = MediaDecoder(2, tuple((e.name, e.preparer) for e in encoders if e.preparer is not None))
    utterance = next(u for u in get_dataset("mosei").utterances(corpus[0], None) if u.id not in corpus[1].values())
    prepared = decoder(utterance).prepared
    assert set(prepared) == {"efficientnet", "clip_image", "esresnext", "mel"}
    assert all(array.flags["C_CONTIGUOUS"] for array in prepared.values())


def test_inference_threads_leave_the_default_workers_their_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    before = torch.get_num_threads()
    try:
        for cores, workers, threads in [(2, 1, 1), (16, 4, 12), (64, 16, 48)]:
            monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
            torch.set_num_threads(cores)
            assert default_workers(cpu) == workers and default_workers(gpu) == min(8, cores - 1)
            with inference_threads(cpu):
                assert torch.get_num_threads() == threads
            assert torch.get_num_threads() == cores
            with inference_threads(gpu):
                assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)


def test_strict_stops_at_the_first_problem(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="--strict"):
        extract("mosei", corpus[0], tmp_path / "cache", workers=0, strict=True, **FAST)


def test_shard_assignment_reads_the_environment() -> None:
    assert shard_assignment(None, None, {}) == (1, 0)
    assert shard_assignment(None, None, {"WORLD_SIZE": "4", "RANK": "2"}) == (4, 2)
    slurm = {"SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "5"}
    assert shard_assignment(None, None, slurm) == (3, 1)
    assert shard_assignment(2, 1, slurm) == (2, 1)
    with pytest.raises(UsageError, match="out of range"):
        shard_assignment(2, 2, {})


def test_paper_profile_offline_fails_fast_naming_every_weight(corpus: tuple[Path, dict], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    started = time.perf_counter()
    with pytest.raises(MissingWeightsError) as error:
        extract("mosei", corpus[0], tmp_path / "cache", profile="paper", workers=0, progress=False,
                weights=WeightOptions(weights_dir=tmp_path / "weights"))
    assert time.perf_counter() - started < 10
    message = str(error.value)
    for needle in ("roberta-large", "efficientnet-b0-355c32eb.pth", "RN50.pt", "AudioCLIP-Full-Training.pt",
                   "bpe_simple_vocab_16e6.txt.gz", "--weights-dir"):
        assert needle in message
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing written


def test_the_clip_encoders_share_one_model_and_drop_an_unused_tower() -> None:
    profile = get_profile("tiny", 2, 2, None)
    weights = resolve_weights(profile, WeightOptions())
    encoders = {e.name: e for e in build_encoders(profile, weights, torch.device("cpu"))}
    model = encoders["clip_image"].model
    assert encoders["clip_text"].model is model  # one CLIP in memory
    assert model.visual is not None and model.transformer is not None
    images_only = replace(profile, settings={k: v for k, v in profile.settings.items() if k != "clip_text"})
    alone = {e.name: e for e in build_encoders(images_only, weights, torch.device("cpu"))}["clip_image"].model
    assert alone is not model and alone.transformer is None and alone.visual is not None
    texts_only = replace(profile, settings={k: v for k, v in profile.settings.items() if k != "clip_image"})
    text = {e.name: e for e in build_encoders(texts_only, weights, torch.device("cpu"))}["clip_text"]
    assert text.model.visual is None
    tokens = torch.zeros(1, text.model.context_length, dtype=torch.long)
    tokens[0, 1] = text.model.vocab_size - 1  # the end-of-text id: the text tower runs without the image tower
    with torch.inference_mode():
        assert torch.equal(text.model.encode_text(tokens), model.encode_text(tokens))
