"""Fixtures for the network tests: tiny HCMNet configs and padded batches of plain tensors (no cache)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from hcm.model.config import ModelConfig

DIMS = {"text": 12, "video": 10, "audio": 8}


def tiny_config(**overrides) -> ModelConfig:
    """A small HCMNet config (3 classes) with the test input widths.

    Built afresh (not ``dataclasses.replace``) so that a ``reading`` override fills the switches.
    """
    base = dict(d_text=DIMS["text"], d_video=DIMS["video"], d_audio=DIMS["audio"], d_model=16, num_heads=2,
                m_ctn=2, m_gcn=2, m_c=2, ot_iters=30, num_classes=3)
    return ModelConfig(**{**base, **overrides})


def make_batch(lengths: dict[str, list[int]], n_max: dict[str, int] | None = None, seed: int = 0,
               classes: int = 3, regression: bool = False) -> dict[str, torch.Tensor]:
    """A padded batch; ``lengths[m][i]`` real rows for sample i, padded rows hold random junk."""
    gen = torch.Generator().manual_seed(seed)
    size = len(lengths["text"])
    batch: dict[str, torch.Tensor] = {}
    for name, dim in DIMS.items():
        n = (n_max or {}).get(name, max(lengths[name]))
        batch[name] = torch.randn(size, n, dim, generator=gen)  # (B, N, D)
        batch[f"{name}_mask"] = torch.arange(n)[None, :] < torch.tensor(lengths[name])[:, None]  # (B, N)
    n_t = batch["text"].shape[1]
    adj = (torch.rand(size, n_t, n_t, generator=gen) > 0.6).float()
    batch["text_adj"] = ((adj + adj.transpose(1, 2)) > 0).float() * (1 - torch.eye(n_t))  # (B, N_t, N_t)
    if regression:
        batch["label"] = torch.rand(size, generator=gen) * 6 - 3
    else:
        batch["label"] = torch.randint(0, classes, (size,), generator=gen)
    return batch


def pad_more(batch: dict[str, torch.Tensor], extra: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """The same batch with ``extra`` more padded rows per modality, filled with junk and edges."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(batch)
    for name in DIMS:
        x, mask = batch[name], batch[f"{name}_mask"]
        junk = torch.randn(x.shape[0], extra, x.shape[2], generator=gen) * 5
        out[name] = torch.cat([x, junk], dim=1)
        out[f"{name}_mask"] = torch.cat([mask, torch.zeros(x.shape[0], extra, dtype=torch.bool)], dim=1)
    adj = batch["text_adj"]
    n = adj.shape[1] + extra
    bigger = (torch.rand(adj.shape[0], n, n, generator=gen) > 0.5).float()
    bigger = ((bigger + bigger.transpose(1, 2)) > 0).float() * (1 - torch.eye(n))
    bigger[:, : adj.shape[1], : adj.shape[1]] = adj
    out["text_adj"] = bigger
    return out


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread: these tensors are tiny, and on a shared CPU the thread
    hand-offs of a second thread cost far more than they save."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_config() -> Callable[..., ModelConfig]:
    """Factory: ``model_config(**overrides)`` is a small 3-class HCMNet config for the batches below."""
    return tiny_config


@pytest.fixture(scope="session")
def model_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory: ``model_batch(lengths, n_max=None, seed=0, classes=3, regression=False)`` is a padded
    batch with ``lengths[m][i]`` real rows of modality m for sample i (junk in the padded rows)."""
    return make_batch


@pytest.fixture(scope="session")
def padded_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory: ``padded_batch(batch, extra, seed=1)`` adds ``extra`` junk-filled padded rows per modality."""
    return pad_more
