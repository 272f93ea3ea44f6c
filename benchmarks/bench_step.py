"""Time one HCMNet training step at paper dimensions, and the share each block takes.

Run by hand (numbers go to benchmarks/RESULTS.md with the machine, date and load they ran at):

    .venv/bin/python benchmarks/bench_step.py --batch 64 --repeats 5
    .venv/bin/python benchmarks/bench_step.py --dataset mosei --cache FEATURES/mosei/paper --batch 64

With ``--cache`` (a paper-profile cache) the batch is made of that cache's train items by the
training data path (read from the shards, standardised, collated; items repeat to fill the
batch), and the report adds the data loader's share of a step: the seconds to read and collate
one batch against the seconds of the step. A JSON line closes the report: ms per step,
samples/s, the step's FLOPs (``FlopCounterMode``, forward + backward), achieved GFLOP/s against
the measured float32 matmul peak (``benchmarks/matmul_peak.py``), peak RSS and the load average.

The training step as CUDA graph replays (``hcm train --set step_graph=on``, training/step.py):

    .venv/bin/python benchmarks/bench_step.py --device cuda --amp bf16 --step-graph on --no-blocks

times the eager step and then the graphed step (forward, backward and AdamW recorded, 3 eager
warm-up steps and the capture untimed) in the same process on fresh copies of the model, and
reports both and the speed-up. ``--step-graph dry`` runs the graphed step through the CPU dry
mode's stand-in graphs (the same buffers and replays, eager arithmetic: a check, not a speed-up).

The whole step (forward, backward, AdamW update) is timed as a unit. The block shares come
from timing each block's forward and backward separately on the inputs the full model gave it
(detached, so only that block runs): heads (Eq. 1-3), ACM (Eq. 4-6), GCN (Eq. 8-10), OT
(Eq. 11-12), PGF (Eq. 13-15 and the pooling), losses (classifier, Eq. 7, 16, 17).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from hcm.model.config import ModelConfig
from hcm.model.hcmnet import HCMNet, build_model
from hcm.model.layers import ModalRows
from hcm.training.settings import load_dataset_facts, load_hparams

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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], Any], repeats: int, warm: int, device: torch.device) -> tuple[float, float]:
    """Median wall and CPU seconds of ``step`` after ``warm`` untimed calls."""
    times, cpu = [], []
    for i in range(repeats + warm):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        if i >= warm:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), statistics.median(cpu)


def step_time(model: HCMNet, batch: dict[str, torch.Tensor], repeats: int,
              amp: torch.dtype | None = None) -> tuple[float, float]:
    """Median wall and CPU seconds (all threads) of one full training step (forward, backward, AdamW)."""
    from hcm.training.inference import autocast

    device = batch["label"].device
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = model(batch).loss
        loss.backward()
        optimizer.step()

    return _timed(step, repeats, 1, device)  # the first step warms up


def graphed_step_time(model: torch.nn.Module, batch: dict[str, torch.Tensor], repeats: int,
                      amp: torch.dtype | None = None, dry: bool = False) -> tuple[float, float, bool]:
    """Median wall and CPU seconds of the step through ``hcm.training.step.TrainStep`` with graphs
    (CUDA graphs, or the dry mode's stand-ins), and whether it was captured (False: it fell back)."""
    from hcm.training import step as steps
    from hcm.training.checkpoints import Loop

    device = batch["label"].device
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loop = Loop(model, optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=False), amp)
    recorder = steps.DryRecorder() if dry else steps.CudaRecorder(device)
    runner = steps.TrainStep(loop, 0.0, device, batch["label"].shape[0], recorder)

    def step() -> None:
        runner.backward(batch)
        runner.update()

    seconds, cpu = _timed(step, repeats, steps.WARMUP_STEPS + 1, device)  # warm-up and capture untimed
    return seconds, cpu, runner.graphs is not None


def step_flops(model: HCMNet, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward + backward (the AdamW update's elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def cache_batch(dataset: str, cache: Path, batch: int) -> tuple[dict[str, torch.Tensor], dict[str, int], float]:
    """A batch of ``batch`` train items of ``cache`` made by the training data path, the modality
    widths, and the median seconds to read and collate one such batch (items repeat if few)."""
    from hcm.training.data import MODEL_KEYS, CacheDataset, data_config
    from hcm.training.settings import TrainConfig

    data = CacheDataset(cache, "train", data_config(load_dataset_facts(dataset), TrainConfig(), cache))
    collate = data.collate()
    times = []
    for repeat in range(3):
        start = time.perf_counter()
        made = collate([data[(repeat * batch + i) % len(data)] for i in range(batch)])
        times.append(time.perf_counter() - start)
    return {k: made[k] for k in MODEL_KEYS if k in made}, data.dims, statistics.median(times)


def _setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value parsed as JSON, else the string)."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _matmul_peak(threads: int, size: int) -> dict[str, float]:
    spec = importlib.util.spec_from_file_location("matmul_peak", Path(__file__).with_name("matmul_peak.py"))
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe.matmul_peak(threads=threads, size=size)


def summary(args: argparse.Namespace, model: HCMNet, batch: dict[str, torch.Tensor], step_s: float,
            step_cpu_s: float, load_s: float | None, load_before: tuple[float, ...]) -> dict:
    """The JSON report of the step benchmark (see the module docstring)."""
    flops = step_flops(model, batch)
    on_cpu = batch["label"].device.type == "cpu"
    peak = _matmul_peak(args.threads, args.peak_size) if on_cpu else {"best_gflops": math.nan}
    report = {
        "dataset": args.dataset, "batch": args.batch, "threads": args.threads,
        "nodes": {m: int(batch[m].shape[1]) for m in ("text", "video", "audio")},
        "source": f"cache {args.cache}" if args.cache else "synthetic",
        "ms_per_step": round(step_s * 1e3, 1), "cpu_ms_per_step": round(step_cpu_s * 1e3, 1),
        "samples_per_s": round(args.batch / step_s, 1),
        "gflop_per_step": float(f"{flops / 1e9:.4g}"), "gflops_achieved": float(f"{flops / step_s / 1e9:.4g}"),
        "device": str(batch["label"].device), "amp": args.amp,
        "matmul_peak": peak if on_cpu else None,
        "share_of_peak": float(f"{flops / step_s / 1e9 / peak['best_gflops']:.3g}") if on_cpu else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_before": [round(x, 1) for x in load_before],
        "loadavg_after": [round(x, 1) for x in os.getloadavg()],
    }
    if load_s is not None:
        report["loader_ms_per_batch"] = round(load_s * 1e3, 1)
        report["loader_share"] = round(load_s / (load_s + step_s), 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="meld", help="hyper-parameter and facts file to use")
    parser.add_argument("--cache", type=Path, help="a paper-profile cache of --dataset: real batches, loader share")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--text-nodes", type=int, default=32)
    parser.add_argument("--video-nodes", type=int, default=16)
    parser.add_argument("--audio-nodes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reading", choices=("paper", "hcm"), default="hcm", help="reading of the equations")
    parser.add_argument("--no-blocks", action="store_true", help="skip the per-block breakdown")
    parser.add_argument("--set-model", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model hyper-parameter of the shipped config (JSON value)")
    parser.add_argument("--peak-size", type=int, default=2048, help="matrix side of the matmul-peak probe")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (on CUDA: no block table, no CPU peak)")
    parser.add_argument("--amp", choices=("off", "bf16"), default="off", help="bf16 autocast, as hcm train's amp")
    parser.add_argument("--step-graph", choices=("off", "on", "dry"), default="off",
                        help="also time the step as CUDA graph replays (dry: the CPU stand-in graphs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    facts = load_dataset_facts(args.dataset)
    load_s = None
    if args.cache:
        batch, dims, load_s = cache_batch(args.dataset, args.cache, args.batch)
    else:
        nodes = {"text": args.text_nodes, "video": args.video_nodes, "audio": args.audio_nodes}
        dims = PAPER_DIMS
    hparams = {**load_hparams(args.dataset)["model"], "reading": args.reading,
               **dict(_setting(text) for text in args.set_model)}
    hparams.update(ot_backend="torch", class_weights=None)  # equal class weights: the step costs the same
    cfg = ModelConfig.from_dict(hparams).for_dataset(facts, dims)
    device, amp = torch.device(args.device), torch.bfloat16 if args.amp == "bf16" else None
    model = build_model(cfg).to(device).train()
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    if not args.cache:
        batch = synthetic_batch(args.batch, nodes, PAPER_DIMS, max(cfg.num_classes, 2))
    batch = {k: v.to(device) for k, v in batch.items()}
    total, total_cpu = step_time(model, batch, args.repeats, amp)
    graphed = None
    if args.step_graph != "off":
        model.load_state_dict(fresh)  # the graphed step starts from the same weights
        graphed = graphed_step_time(model, batch, args.repeats, amp, dry=args.step_graph == "dry")
    if not args.no_blocks and device.type == "cpu":
        print_blocks(args, model, batch, total)
    report = summary(args, model, batch, total, total_cpu, load_s, load_before)
    if graphed is not None:
        report.update(step_graph=args.step_graph, graphed_ms_per_step=round(graphed[0] * 1e3, 1),
                      graphed_cpu_ms_per_step=round(graphed[1] * 1e3, 1), graphed_captured=graphed[2],
                      speedup=round(total / graphed[0], 2))
    print(json.dumps(report))


def print_blocks(args: argparse.Namespace, model: HCMNet, batch: dict[str, torch.Tensor], total: float) -> None:
    """The per-block table: forward + backward of each block on the inputs the full model gave it."""
    blocks = block_times(model, batch, args.repeats)
    nodes = {m: int(batch[m].shape[1]) for m in ("text", "video", "audio")}
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
