"""Time one HCMNet training step at paper dimensions, and the share each block takes.

Run by hand (numbers go to benchmarks/RESULTS.md with the machine, date and load they ran at):

    .venv/bin/python benchmarks/bench_step.py --batch 64 --repeats 5

The whole step (forward, backward, AdamW update) is timed as a unit. The block shares come
from timing each block's forward and backward separately on the inputs the full model gave it
(detached, so only that block runs): heads (Eq. 1-3), ACM (Eq. 4-6), GCN (Eq. 8-10), OT
(Eq. 11-12), PGF (Eq. 13-15 and the pooling), losses (classifier, Eq. 7, 16, 17).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from hcm.model.config import ModelConfig
from hcm.training.settings import load_dataset_facts, load_hparams
from hcm.model.hcmnet import HCMNet, build_model
from hcm.model.layers import ModalRows

PAPER_DIMS = {"text": 1024 + 1024, "video": 1280 + 1024, "audio": 1024 + 128}  # streams concatenated


def synthetic_batch(batch: int, nodes: dict[str, int], dims: dict[str, int], classes: int) -> dict[str, torch.Tensor]:
    """Random padded batch; each sample has between half and all of the node budget."""
    out: dict[str, torch.Tensor] = {}
    for name, n in nodes.items():
        lengths = torch.randint(max(1, n // 2), n + 1, (batch,))
        out[name] = torch.randn(batch, n, dims[name])
        out[f"{name}_mask"] = torch.arange(n)[None] < lengths[:, None]
    n_t = nodes["text"]
    adj = (torch.rand(batch, n_t, n_t) > 0.9).float()
    out["text_adj"] = ((adj + adj.transpose(1, 2)) > 0).float() * (1 - torch.eye(n_t))
    out["label"] = torch.randint(0, classes, (batch,))
    return out


def _detach(obj: Any) -> Any:
    """Copy of a block's input with fresh leaves, so timing covers that block alone."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().requires_grad_(obj.is_floating_point())
    if isinstance(obj, ModalRows):
        return dataclasses.replace(obj, x=_detach(obj.x))
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_detach(v) for v in obj)
    return obj


def _grad_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.requires_grad else []
    if isinstance(obj, ModalRows):
        return _grad_tensors(obj.x)
    if dataclasses.is_dataclass(obj):
        return [t for f in dataclasses.fields(obj) for t in _grad_tensors(getattr(obj, f.name))]
    if isinstance(obj, (dict, tuple, list)):
        values = obj.values() if isinstance(obj, dict) else obj
        return [t for v in values for t in _grad_tensors(v)]
    return []


def _time_block(fn: Callable[..., Any], args: tuple, repeats: int) -> float:
    """Median seconds of forward + backward of ``fn(*args)``."""
    times = []
    for _ in range(repeats):
        inputs = _detach(args)
        start = time.perf_counter()
        outputs = _grad_tensors(fn(*inputs))
        torch.autograd.backward(outputs, [torch.ones_like(t) for t in outputs])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def block_times(model: HCMNet, batch: dict[str, torch.Tensor], repeats: int) -> dict[str, float]:
    """Forward + backward seconds of each block of the full model."""
    with torch.no_grad():
        rows = model.encode(batch)
        atomic, _ = model.atomic(rows)
        graphs = model.graphs(atomic, batch["text_adj"])
        moved = model.transport(graphs, model.anchor)
        _, p_a = model.atomic(rows)
        p_c, _ = model.composition(atomic, batch["text_adj"])

    def pgf(moved_graphs, cost, text):
        p_u = model.fusion([moved_graphs[m] for m in model.others], text)
        return model.pool_composition(model.cost_fusion(p_u, cost, text.support), text.support)

    def losses(p_a, p_c, atomic):
        prediction = model.classifier(torch.cat([p_a, p_c], dim=-1))
        return model.objective(prediction, atomic, batch["label"])[0]

    return {
        "heads (Eq. 1-3)": _time_block(model.encode, (batch,), repeats),
        "ACM (Eq. 4-6)": _time_block(model.atomic, (rows,), repeats),
        "GCN (Eq. 8-10)": _time_block(model.graphs, (atomic, batch["text_adj"]), repeats),
        "OT (Eq. 11-12)": _time_block(lambda g: model.transport(g, model.anchor), (graphs,), repeats),
        "PGF (Eq. 13-15)": _time_block(pgf, (moved.graphs, moved.transferred_cost, graphs[model.anchor]), repeats),
        "losses (Eq. 7, 16, 17)": _time_block(losses, (p_a, p_c, atomic), repeats),
    }


def step_time(model: HCMNet, batch: dict[str, torch.Tensor], repeats: int) -> float:
    """Median seconds of one full training step (forward, backward, AdamW update)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(batch).loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="meld", help="hyper-parameter and facts file to use")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--text-nodes", type=int, default=32)
    parser.add_argument("--video-nodes", type=int, default=16)
    parser.add_argument("--audio-nodes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reading", choices=("paper", "hcm"), default="hcm", help="reading of the equations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    facts = load_dataset_facts(args.dataset)
    settings = {**load_hparams(args.dataset)["model"], "reading": args.reading, "ot_backend": "torch",
                "class_weights": None}  # equal class weights: the step costs the same
    cfg = ModelConfig.from_dict(settings).for_dataset(facts, PAPER_DIMS)
    model = build_model(cfg).train()
    nodes = {"text": args.text_nodes, "video": args.video_nodes, "audio": args.audio_nodes}
    batch = synthetic_batch(args.batch, nodes, PAPER_DIMS, max(cfg.num_classes, 2))
    total = step_time(model, batch, args.repeats)
    blocks = block_times(model, batch, args.repeats)
    params = sum(p.numel() for p in model.parameters())
    table = Table(title=f"HCMNet step, batch {args.batch}, nodes {nodes}, {params / 1e6:.1f} M params, "
                        f"{args.threads} threads")
    table.add_column("block")
    table.add_column("fwd+bwd ms", justify="right")
    table.add_column("share of block sum", justify="right")
    block_sum = sum(blocks.values())
    for name, seconds in blocks.items():
        table.add_row(name, f"{seconds * 1e3:.1f}", f"{seconds / block_sum:.0%}")
    table.add_row("sum of blocks", f"{block_sum * 1e3:.1f}", "")
    table.add_row("full step (incl. AdamW)", f"{total * 1e3:.1f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
