"""Two CPU processes (gloo) with DistributedDataParallel reach what one process reaches."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hcm.model.config import ModelConfig
from hcm.training.checkpoints import load_checkpoint
from hcm.training.faults import TrainingInterrupted
from hcm.training.settings import DatasetFacts, TrainConfig
from hcm.training.trainer import train

pytestmark = pytest.mark.slow
CFG = dict(epochs=2, batch_size=8, lr=0.02, patience=0, seed=5, device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cache: str, run_dir: str, facts: DatasetFacts, factory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        train(cache, run_dir, TrainConfig(**CFG), ModelConfig(), facts=facts, model_factory=factory, progress=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_process_ddp_matches_one_process(tmp_path: Path, tiny_cache, tiny_facts, tiny_net) -> None:
    cache = tiny_cache(tmp_path / "sample" / "tiny")
    single = train(cache, tmp_path / "one", TrainConfig(**CFG), ModelConfig(), facts=tiny_facts(),
                   model_factory=tiny_net.factory, progress=False)
    args = (2, _free_port(), str(cache), str(tmp_path / "two"), tiny_facts(), tiny_net.factory)
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-4, atol=1e-5)
    for one, two in zip(single.history, b["history"]):
        assert two["valid_mae"] == pytest.approx(one["valid_mae"], rel=1e-4)
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert len(b["rng"]) == 2 and b["config"]["world_size"] == 2


def _stopping_worker(rank: int, world: int, port: int, cache: str, run_dir: str, out: str,
                     facts: DatasetFacts) -> None:
    """Rank 1 alone receives SIGTERM during its third step; each rank records how it stopped."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    if rank == 1:
        os.environ["HCM_TEST_SIGNAL"] = "SIGTERM:3"
    torch.set_num_threads(1)
    try:
        train(cache, run_dir, TrainConfig(**CFG), ModelConfig(), facts=facts,
              model_factory="hcm_signal_model:SignalNet", progress=False)
        Path(out, f"rank{rank}").write_text("finished")
    except TrainingInterrupted as stop:
        Path(out, f"rank{rank}").write_text(f"{stop.exit_code} {str(stop).split(';')[0]}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path, tiny_cache, tiny_facts) -> None:
    cache = tiny_cache(tmp_path / "sample" / "tiny")
    mp.spawn(_stopping_worker, args=(2, _free_port(), str(cache), str(tmp_path / "run"), str(tmp_path), tiny_facts()),
             nprocs=2, join=True)
    said = [(tmp_path / f"rank{r}").read_text() for r in range(2)]
    assert said == ["143 training stopped by SIGTERM at epoch 1, step 3"] * 2
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (0, 3) and len(state["rng"]) == len(state["partial"]) == 2
