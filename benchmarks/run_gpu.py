"""One command for a borrowed GPU: encoder throughput, training steps, the OT crossover, memory.

    python benchmarks/run_gpu.py                       # on the GPU, paper sizes; prints one JSON
    python benchmarks/run_gpu.py --device cpu --dry    # tiny sizes in seconds (the test suite runs this)

Sections, each with its own time budget so the whole run fits in a few minutes of device time:

- ``peak``: the device's measured matrix-product rate (float32, TF32, bfloat16), the yardstick
  for the shares below.
- ``encoders``: the paper's encoder networks at full size with random weights (RoBERTa-large,
  EfficientNet-b0, CLIP RN50 image and text towers, ESResNeXt-FBSP) on batches of synthetic
  clips, inputs copied from pinned host memory inside the timed call: clips/s of inference in
  float32 and under float16/bfloat16 autocast, and the share of the matching matmul peak
  (decoding is not included: it runs in CPU worker processes beside the GPU).
- ``train_step``: ms per HCMNet training step (forward, backward, AdamW) at batch 64 and the
  paper-profile input widths, with AMP off and on, with the Sinkhorn loops as CUDA graphs and
  eagerly, and samples/s; then the whole step as CUDA graph replays (``step_graph``, fp32 and
  bf16; in a CPU dry run through the stand-in graphs of training/step.py).
- ``ot``: the training-size problem (B = 64, M = N = 50, d = 256, 50 iterations) eagerly, as
  CUDA graph replays and with KeOps, the largest difference between graph and eager results;
  then forward + backward of ``sinkhorn_transport`` (Eq. 12) per backend for growing node
  counts at B = 1 and B = 64, and the smallest count at which KeOps beats dense torch (the
  ``auto`` threshold).
- peak accelerator memory per section (``torch.cuda.max_memory_allocated``).

A section that fails records its error and the run goes on; the JSON is printed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

PAPER_DIMS = {"text": 1024 + 1024, "video": 1280 + 1024, "audio": 1024 + 128}  # streams concatenated
TINY_DIMS = {"text": 32, "video": 24, "audio": 16}


@dataclasses.dataclass(frozen=True)
class Sizes:
    clips: int  # clips per encoder batch
    tokens: int  # RoBERTa tokens per clip (context window)
    frames: int  # video frames per clip
    segments: int  # audio segments per clip
    image: int  # image side in pixels
    batch: int  # training batch
    nodes: dict[str, int]
    dims: dict[str, int]
    ot_sizes: tuple[int, ...]  # node counts at B = 1
    ot_batch_sizes: tuple[int, ...]  # node counts at B = 64 (B = 2 in a dry run)
    repeats: int


PAPER = Sizes(clips=16, tokens=128, frames=16, segments=8, image=224, batch=64,
              nodes={"text": 32, "video": 16, "audio": 16}, dims=PAPER_DIMS,
              ot_sizes=(64, 256, 1024, 4096, 16384), ot_batch_sizes=(50, 128, 256, 512, 1024), repeats=5)
DRY = Sizes(clips=1, tokens=16, frames=2, segments=2, image=64, batch=4,
            nodes={"text": 6, "video": 3, "audio": 3}, dims=TINY_DIMS, ot_sizes=(8, 16), ot_batch_sizes=(8,),
            repeats=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def autocast_dtypes(device: torch.device) -> list[torch.dtype | None]:
    if device.type == "cuda":
        return [None, torch.float16] + ([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
    return [None, torch.bfloat16]


def _amp(device: torch.device, dtype: torch.dtype | None):
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("float16", "fp16").replace(
        "bfloat16", "bf16").replace("bfp16", "bf16")


def matmul_rates(device: torch.device, dry: bool) -> dict[str, Any]:
    """TFLOP/s of one large square product per precision (median of the repeats), the yardstick."""
    size, repeats = (256, 2) if dry else (8192, 10)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(device) for _ in range(2))
    modes = {"fp32": (torch.float32, False), "tf32": (torch.float32, True)}
    if device.type == "cuda":
        modes |= {"fp16": (torch.float16, False), "bf16": (torch.bfloat16, False)}
    out: dict[str, Any] = {"size": size}
    previous = torch.backends.cuda.matmul.allow_tf32
    for name, (dtype, tf32) in modes.items():
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x, y = a.to(dtype), b.to(dtype)
        seconds = timed(lambda: x @ y, device, repeats)
        out[name] = round(2 * size ** 3 / seconds / 1e12, 2)
    torch.backends.cuda.matmul.allow_tf32 = previous
    return out


def encoder_jobs(sizes: Sizes, dry: bool) -> dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor], Callable]]:
    """The encoder networks (paper size, or tiny in a dry run), one batch of host inputs each
    (pinned when a GPU is there), and the call on the device copies of those inputs."""
    from efficientnet_pytorch import EfficientNet
    from transformers import RobertaConfig, RobertaModel

    from hcm.pipeline.encoders import clip, esresnext

    n, frames = sizes.clips, sizes.clips * sizes.frames
    if dry:
        roberta = RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                max_position_embeddings=64, vocab_size=100)
        clip_net, audio_cfg = clip.CLIPConfig(**{**dataclasses.asdict(clip.tiny_config()), "vocab_size": 100}), \
            esresnext.tiny_config()
    else:
        roberta = RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                intermediate_size=4096, max_position_embeddings=514)
        clip_net, audio_cfg = clip.rn50_config(), esresnext.released_config()
    clip_net = clip.CLIP.from_config(clip_net)
    pin = torch.cuda.is_available()
    host = lambda t: t.pin_memory() if pin else t  # noqa: E731 - as the extraction's encoders copy
    ids = host(torch.ones(n, sizes.tokens, dtype=torch.long))
    images = host(torch.randn(frames, 3, sizes.image, sizes.image))
    context = min(77, clip_net.context_length) if hasattr(clip_net, "context_length") else 77
    text = host(torch.ones(n, context, dtype=torch.long))
    seconds = 0.25 if dry else 1.0
    waves = host(torch.randn(n * sizes.segments, int(44100 * seconds)) * 3000)
    return {
        "roberta": (RobertaModel(roberta, add_pooling_layer=False), {"ids": ids}, lambda m, t: m(input_ids=t["ids"])),
        "efficientnet": (EfficientNet.from_name("efficientnet-b0"), {"x": images},
                         lambda m, t: m.extract_features(t["x"])),
        "clip_image": (clip_net, {"x": images}, lambda m, t: m.encode_image(t["x"])),
        "clip_text": (clip_net, {"ids": text}, lambda m, t: m.encode_text(t["ids"])),
        "esresnext": (esresnext.ESResNeXtFBSP.from_config(audio_cfg), {"x": waves}, lambda m, t: m(t["x"])),
    }


def _flops(call: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        call()
    return float(counter.get_total_flops())


CONVOLUTIONAL = ("efficientnet", "clip_image", "esresnext")  # also timed with channels-last weights and inputs


def _encoder_call(model: torch.nn.Module, inputs: dict[str, torch.Tensor], call: Callable, device: torch.device,
                  dtype: torch.dtype | None, layout: torch.memory_format) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode(), _amp(device, dtype):
            moved = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
            if layout == torch.channels_last:
                moved = {k: v.contiguous(memory_format=layout) if v.dim() == 4 else v for k, v in moved.items()}
            return call(model, moved)
    return run


def bench_encoders(sizes: Sizes, dry: bool, device: torch.device, peak: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"clips_per_batch": sizes.clips, "frames": sizes.frames, "segments": sizes.segments,
                           "tokens": sizes.tokens, "inputs": "copied from pinned host memory inside each call"
                           if device.type == "cuda" else "host tensors"}
    totals = {_name(d): 0.0 for d in autocast_dtypes(device)}
    flops_total = 0.0
    for name, (model, inputs, call) in encoder_jobs(sizes, dry).items():
        model = model.to(device).eval()
        reset_peak(device)
        row: dict[str, Any] = {}
        layouts = [torch.contiguous_format] + ([torch.channels_last] if name in CONVOLUTIONAL else [])
        for layout in layouts:
            model = model.to(memory_format=layout)
            for dtype in autocast_dtypes(device):
                seconds = timed(_encoder_call(model, inputs, call, device, dtype, layout), device, sizes.repeats)
                suffix = "_channels_last" if layout == torch.channels_last else ""
                row[f"{_name(dtype)}{suffix}_ms_per_batch"] = round(seconds * 1e3, 2)
                if layout == torch.contiguous_format:
                    totals[_name(dtype)] += seconds
        with torch.inference_mode():
            row["gflop_per_batch"] = round(_flops(lambda: call(model, {k: v.to(device) for k, v in inputs.items()}))
                                           / 1e9, 3)
        flops_total += row["gflop_per_batch"] * 1e9
        row["peak_mib"] = peak_memory_mib(device)
        out[name] = row
        model.cpu()
    out["clips_per_s"] = {key: round(sizes.clips / value, 2) for key, value in totals.items() if value > 0}
    rates = {"fp32": peak.get("tf32" if torch.backends.cudnn.allow_tf32 else "fp32"), "fp16": peak.get("fp16"),
             "bf16": peak.get("bf16")}
    out["share_of_matmul_peak"] = {key: round(flops_total / value / (rates[key] * 1e12), 3)
                                   for key, value in totals.items() if value > 0 and rates.get(key)}
    return out


def synthetic_batch(sizes: Sizes, classes: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for name, n in sizes.nodes.items():
        lengths = torch.randint(max(1, n // 2), n + 1, (sizes.batch,), generator=gen)
        out[name] = torch.randn(sizes.batch, n, sizes.dims[name], generator=gen)
        out[f"{name}_mask"] = torch.arange(n)[None] < lengths[:, None]
    n_t = sizes.nodes["text"]
    adj = (torch.rand(sizes.batch, n_t, n_t, generator=gen) > 0.8).float()
    out["text_adj"] = ((adj + adj.transpose(1, 2)) > 0).float() * (1 - torch.eye(n_t))
    out["label"] = torch.randint(0, classes, (sizes.batch,), generator=gen)
    return {k: v.to(device) for k, v in out.items()}


def bench_train_step(sizes: Sizes, dry: bool, device: torch.device, dataset: str) -> dict[str, Any]:
    from hcm.model.config import ModelConfig
    from hcm.model.hcmnet import build_model
    from hcm.model.ot import cuda_graphs
    from hcm.training.settings import load_dataset_facts, load_hparams

    facts = load_dataset_facts(dataset)
    # equal class weights: the step costs the same, and no training split is at hand to count
    settings = {**load_hparams(dataset)["model"], "class_weights": None}
    if dry:
        settings = {**settings, "d_model": 16, "num_heads": 2, "m_ctn": 2, "m_gcn": 1, "m_c": 1}
    cfg = ModelConfig.from_dict(settings).for_dataset(facts, sizes.dims)
    model = build_model(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    batch = synthetic_batch(sizes, max(cfg.num_classes, 2), device)
    out: dict[str, Any] = {"dataset": dataset, "batch": sizes.batch, "nodes": sizes.nodes,
                           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    graph_modes = [True, False] if device.type == "cuda" else [False]
    for graphs in graph_modes:
        cuda_graphs.use_cuda_graphs(graphs)
        for dtype in autocast_dtypes(device):
            scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

            def step() -> None:
                optimizer.zero_grad(set_to_none=True)
                with _amp(device, dtype):
                    loss = model(batch).loss
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

            reset_peak(device)
            seconds = timed(step, device, sizes.repeats)
            key = _name(dtype) + ("_graphs" if graphs else "")
            out[key] = {"ms_per_step": round(seconds * 1e3, 2), "samples_per_s": round(sizes.batch / seconds, 1),
                        "peak_mib": peak_memory_mib(device)}
    cuda_graphs.use_cuda_graphs(None)
    from bench_step import graphed_step_time  # beside this script
    for dtype in [d for d in autocast_dtypes(device) if d != torch.float16]:  # fp16's grad scaler runs eagerly
        reset_peak(device)
        seconds, _, captured = graphed_step_time(build_model(cfg).to(device).train(), batch, sizes.repeats, dtype,
                                                 dry=device.type != "cuda")
        out[_name(dtype) + "_step_graph"] = {
            "ms_per_step": round(seconds * 1e3, 2), "samples_per_s": round(sizes.batch / seconds, 1),
            "peak_mib": peak_memory_mib(device), "captured": captured, "dry": device.type != "cuda"}
    return out


def _clouds(batch: int, nodes: int, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """bench_ot.py's unit-norm point clouds, as leaves on ``device``."""
    from bench_ot import _inputs  # beside this script

    x, y = _inputs(batch, nodes, nodes, dim, seed=nodes * 131 + batch)
    return x.detach().to(device).requires_grad_(), y.detach().to(device).requires_grad_()


def _ot_run(x: torch.Tensor, y: torch.Tensor, backend: str, n_iters: int) -> Callable[[], Any]:
    from hcm.model.ot import sinkhorn_transport

    def run() -> torch.Tensor:
        x.grad = y.grad = None
        moved = sinkhorn_transport(x, y, x, eps=0.1, n_iters=n_iters, p=1, backend=backend)
        moved.square().sum().backward()
        return moved.detach()

    return run


def _time_backends(x: torch.Tensor, y: torch.Tensor, backends: list[str], device: torch.device,
                   repeats: int, n_iters: int = 50) -> dict[str, Any]:
    from hcm.model.ot import cuda_graphs

    row: dict[str, Any] = {}
    for backend in backends:
        graphs = backend == "torch_graphs"
        cuda_graphs.use_cuda_graphs(graphs if device.type == "cuda" else False)
        reset_peak(device)
        try:
            row[f"{backend}_ms"] = round(timed(_ot_run(x, y, backend.removesuffix("_graphs"), n_iters), device,
                                               repeats) * 1e3, 3)
            row[f"{backend}_peak_mib"] = peak_memory_mib(device)
        except Exception as error:  # noqa: BLE001 - out of memory at the largest sizes, a KeOps build failure
            row[f"{backend}_error"] = str(error).splitlines()[0][:200]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    cuda_graphs.use_cuda_graphs(None)
    return row


def _graph_difference(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative difference between graph replay and eager results (transport and gradients)."""
    from hcm.model.ot import cuda_graphs

    results = []
    for graphs in (False, True):
        cuda_graphs.use_cuda_graphs(graphs)
        results.append((_ot_run(x, y, "torch", 50)(), x.grad.clone(), y.grad.clone()))
    cuda_graphs.use_cuda_graphs(None)
    eager, graphed = results
    return max(float((g - e).abs().max() / e.abs().max().clamp_min(1e-30)) for g, e in zip(graphed, eager))


def bench_ot(sizes: Sizes, dry: bool, device: torch.device, with_keops: bool) -> dict[str, Any]:
    batch, nodes, dim = (2, 8, 16) if dry else (64, 50, 256)
    graphs = ["torch_graphs"] if device.type == "cuda" else []
    backends = ["torch"] + graphs + (["keops"] if with_keops else [])
    x, y = _clouds(batch, nodes, dim, device)
    training = {"batch": batch, "nodes": nodes, "d": dim, "n_iters": 50,
                **_time_backends(x, y, backends, device, max(sizes.repeats, 10 if not dry else 1))}
    if graphs:
        training["graph_vs_eager_max_rel_diff"] = _graph_difference(x, y)
    rows = []
    for batch_size, node_counts in ((1, sizes.ot_sizes), (2 if dry else 64, sizes.ot_batch_sizes)):
        for count in node_counts:
            cx, cy = _clouds(batch_size, count, 64, device)
            rows.append({"batch": batch_size, "nodes": count,
                         **_time_backends(cx, cy, backends, device, sizes.repeats)})

    def fastest_torch(row: dict[str, Any]) -> float:
        return min((row[f"{b}_ms"] for b in ("torch", "torch_graphs") if f"{b}_ms" in row), default=float("inf"))

    crossover = {}
    for batch_size in sorted({row["batch"] for row in rows}):
        faster = [r["nodes"] for r in rows if r["batch"] == batch_size and "keops_ms" in r
                  and r["keops_ms"] < fastest_torch(r)]
        crossover[str(batch_size)] = min(faster) if faster else None
    return {"training_size": training, "d": 64, "n_iters": 50, "rows": rows, "keops_faster_from_nodes": crossover}


def run_section(results: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    start = time.perf_counter()
    try:
        results[name] = work()
    except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' numbers
        where = traceback.extract_tb(error.__traceback__)[-3:]
        results[name] = {"error": f"{type(error).__name__}: {error}"[:500],
                         "where": [f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.line}"
                                   for frame in where]}
    results[name]["seconds"] = round(time.perf_counter() - start, 2)
    print(f"[{name}] done in {results[name]['seconds']} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry", action="store_true", help="tiny sizes: checks that every section runs")
    parser.add_argument("--dataset", default="meld", help="shipped settings for the training step")
    parser.add_argument("--sections", default="encoders,train_step,ot")
    parser.add_argument("--clips", type=int, help="clips per encoder batch (default: 16 at paper size)")
    parser.add_argument("--out", type=Path, help="also write the JSON here, after every section (a cut-off run "
                                                  "keeps what it measured)")
    parser.add_argument("--keops", choices=("auto", "yes", "no"), default="auto",
                        help="time KeOps too (auto: on CUDA only; on a CPU each formula compiles for seconds)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sizes = DRY if args.dry else PAPER
    if args.clips:
        sizes = dataclasses.replace(sizes, clips=args.clips)
    torch.manual_seed(0)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "dry": args.dry, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    wanted = set(args.sections.split(","))
    with_keops = args.keops == "yes" or (args.keops == "auto" and device.type == "cuda")
    sections = {
        "peak": lambda: matmul_rates(device, args.dry),
        "ot": lambda: bench_ot(sizes, args.dry, device, with_keops),
        "train_step": lambda: bench_train_step(sizes, args.dry, device, args.dataset),
        "encoders": lambda: bench_encoders(sizes, args.dry, device, results["peak"]),
    }
    for name, work in sections.items():
        if name == "peak" or name in wanted:
            run_section(results, name, work)
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
