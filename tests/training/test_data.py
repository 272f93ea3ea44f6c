"""Cache items -> batches: row selection, adjacency re-indexing, stream alignment, padding, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hcm.cache.schema import Item
from hcm.training.data import CacheDataset, DataConfig, align_rows, item_example, reindex_edges


def test_reindex_edges_keeps_current_rows_symmetric_without_self_loops() -> None:
    edges = np.array([[2, 3], [3, 5], [0, 2], [4, 4], [5, 2], [3, 2]])
    kept = np.array([2, 3, 5])  # rows 2, 3, 5 become nodes 0, 1, 2
    out = reindex_edges(edges, kept, n_rows=7)
    assert sorted(map(tuple, out.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]


def test_align_rows_repeat_pool_interpolate() -> None:
    one = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(align_rows(one, 3), [[1, 2]] * 3)
    long = np.arange(8, dtype=np.float32).reshape(4, 2)  # rows (0,1) (2,3) (4,5) (6,7)
    np.testing.assert_allclose(align_rows(long, 2), [[1, 2], [5, 6]])  # mean of row pairs
    short = np.array([[0.0], [2.0]])
    np.testing.assert_allclose(align_rows(short, 3), [[0.0], [1.0], [2.0]])
    assert align_rows(np.zeros((0, 2)), 3).shape == (3, 2)


def _item(masks: dict | None = None) -> Item:
    roberta = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)  # rows 0..5; current = 1..3
    features = {
        "roberta": roberta, "roberta_current": np.array([0, 1, 1, 1, 0, 0], dtype=np.uint8),
        "text_edges": np.array([[1, 2], [2, 3], [3, 4]]), "clip_text": np.array([[9.0]]),
        "efficientnet": np.ones((5, 2)), "clip_image": np.full((5, 1), 3.0),
        "esresnext": np.ones((2, 1)), "mel": np.array([[0.0], [2.0], [4.0], [6.0]]),
    }
    return Item(id="a", split="train", label=0.5, features=features, masks=masks or {})


def test_item_example_rows_streams_and_caps() -> None:
    streams = {"text": ["roberta", "clip_text"], "video": ["efficientnet", "clip_image"], "audio": ["esresnext", "mel"]}
    ex = item_example(0, _item(), DataConfig(streams=streams, max_text_tokens=2, max_frames=3))
    np.testing.assert_array_equal(ex.nodes["text"], [[2, 3, 9], [4, 5, 9]])  # rows 1, 2 + clip_text
    assert ex.edges.tolist() == [[0, 1], [1, 0]]  # (1,2) kept, (2,3) cut by the cap, (3,4) leaves
    assert ex.nodes["video"].shape == (3, 3)
    np.testing.assert_allclose(ex.nodes["audio"], [[1, 1], [1, 5]])  # mel pooled 4 -> 2


@pytest.mark.parametrize("frames", [1, 2, 3, 7, 12, 300])
def test_mel_frames_of_any_length_are_pooled_onto_the_audio_segments(frames: int) -> None:
    """A Mel stream that keeps its time axis (k, 128) is brought onto the S = 3 segment nodes."""
    item = _item()
    mel = np.repeat(np.arange(frames, dtype=np.float32)[:, None], 128, axis=1)  # frame f holds f
    item.features.update(esresnext=np.ones((3, 1)), mel=mel)
    ex = item_example(0, item, DataConfig(streams={"audio": ["esresnext", "mel"]}))
    assert ex.nodes["audio"].shape == (3, 1 + 128)
    pooled = ex.nodes["audio"][:, 1]
    if frames == 1:
        np.testing.assert_array_equal(pooled, [0, 0, 0])  # one frame: on every segment
    elif frames % 3 == 0:
        blocks = np.arange(frames).reshape(3, -1).mean(axis=1)  # segment s: mean of its k/3 frames
        np.testing.assert_allclose(pooled, blocks)
    assert np.all(np.diff(pooled) >= 0) and pooled[0] >= 0 and pooled[-1] <= frames - 1


def test_absent_modality_has_no_nodes() -> None:
    streams = {"text": ["roberta"], "video": ["efficientnet"]}
    ex = item_example(0, _item({"video": False}), DataConfig(streams=streams))
    assert ex.nodes["video"].shape == (0, 2) and not ex.present["video"]


def test_modality_with_zero_rows_in_the_cache() -> None:
    """A silent clip or an empty transcript is stored as streams with no rows."""
    item = _item({"audio": False, "text": False})
    item.features.update(esresnext=np.zeros((0, 1)), mel=np.zeros((0, 1)),
                         roberta=np.zeros((0, 2)), roberta_current=np.zeros((0,)), token_word=np.zeros((0,)))
    streams = {"text": ["roberta", "clip_text"], "audio": ["esresnext", "mel"]}
    ex = item_example(0, item, DataConfig(streams=streams))
    assert ex.nodes["audio"].shape == (0, 2) and not ex.present["audio"]
    assert ex.nodes["text"].shape == (0, 3) and not ex.present["text"]


@pytest.fixture(scope="module")
def cache(tiny_cache) -> Path:
    return tiny_cache()


def test_collate_pads_and_masks(cache: Path, tiny_cache) -> None:
    data = CacheDataset(cache, "train", DataConfig(streams=tiny_cache.streams))
    batch = data.collate()([data[i] for i in range(4)])
    n_text = batch["text_mask"].sum(1)
    dims = tiny_cache.dims
    assert batch["text"].shape[-1] == dims["roberta"] + dims["clip_text"]
    assert batch["audio"].shape[-1] == dims["esresnext"] + dims["mel"]
    for b in range(4):
        n = int(n_text[b])
        assert torch.all(batch["text"][b, n:] == 0)
        adj = batch["text_adj"][b]
        assert torch.equal(adj, adj.T) and adj.diagonal().sum() == 0
        assert adj[n:].sum() == 0 and adj[:n, :n].sum() == 2 * (n - 1)  # a chain over the tokens
    assert batch["label"].dtype == torch.float32 and batch["index"].tolist() == [0, 1, 2, 3]


def test_dataloader_workers_and_in_memory_agree(cache: Path, tiny_cache) -> None:
    streamed = CacheDataset(cache, "valid", DataConfig(streams=tiny_cache.streams))
    memory = CacheDataset(cache, "valid", DataConfig(streams=tiny_cache.streams), in_memory=True)
    a = next(iter(DataLoader(streamed, batch_size=8, collate_fn=streamed.collate(), num_workers=2)))
    b = next(iter(DataLoader(memory, batch_size=8, collate_fn=memory.collate())))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len(streamed) == 8 and streamed.ids[0] == "clip032"


def test_missing_stream_is_a_clear_error(cache: Path) -> None:
    with pytest.raises(ValueError, match="lacks the streams"):
        CacheDataset(cache, "train", DataConfig(streams={"text": ["bert"]}))


def test_stream_statistics_standardise_the_train_split(cache: Path) -> None:
    from hcm.training.data import as_rows, stream_statistics

    stats = stream_statistics(cache, ["efficientnet", "mel"])
    cfg = DataConfig(streams={"video": ["efficientnet"]}, stream_stats=stats)
    train = CacheDataset(cache, "train", DataConfig(streams={"video": ["efficientnet"]}))
    rows = np.concatenate([as_rows(train.cache[i].features["efficientnet"]) for i in range(len(train.cache))])
    standardised = cfg.standardise("efficientnet", rows)
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=1e-2)
    assert np.array_equal(DataConfig(streams={}).standardise("efficientnet", rows), rows)
