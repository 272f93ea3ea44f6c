"""One command for a borrowed GPU: encoder throughput, training steps, the OT crossover, memory.

    python benchmarks/run_gpu.py                       # on the GPU, paper sizes; prints one JSON
    python benchmarks/run_gpu.py --device cpu --dry    # tiny sizes in seconds (the test suite runs this)

Sections, each with its own time budget so the whole run fits in a few minutes of device time:

- ``encoders``: the paper's encoder networks at full size with random weights (RoBERTa-large,
  EfficientNet-b0, CLIP RN50 image and text towers, ESResNeXt-FBSP) on batches of synthetic
  clips: clips/s of inference in float32 and under float16/bfloat16 autocast (decoding is not
  included: it runs in CPU worker processes beside the GPU).
- ``train_step``: ms per HCMNet training step (forward, backward, AdamW) at batch 64 and the
  paper-profile input widths, with AMP off and on, and samples/s.
- ``ot``: forward + backward of ``sinkhorn_transport`` (Eq. 12) per backend for growing node
  counts, and the smallest count at which KeOps beats dense torch (the ``auto`` threshold).
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
from collections.abc import Callable
from contextlib import nullcontext
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
    ot_sizes: tuple[int, ...]
    repeats: int


PAPER = Sizes(clips=16, tokens=128, frames=16, segments=8, image=224, batch=64,
              nodes={"text": 32, "video": 16, "audio": 16}, dims=PAPER_DIMS,
              ot_sizes=(64, 256, 1024, 4096, 16384), repeats=5)
DRY = Sizes(clips=1, tokens=16, frames=2, segments=2, image=64, batch=4,
            nodes={"text": 6, "video": 3, "audio": 3}, dims=TINY_DIMS, ot_sizes=(8, 16), repeats=1)


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


def encoder_jobs(sizes: Sizes, dry: bool, device: torch.device) -> dict[str, tuple[torch.nn.Module, Callable]]:
    """The encoder networks (paper size, or tiny in a dry run) and a call on one batch of clips."""
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
    ids = torch.ones(n, sizes.tokens, dtype=torch.long, device=device)
    images = torch.randn(frames, 3, sizes.image, sizes.image, device=device)
    context = min(77, clip_net.context_length) if hasattr(clip_net, "context_length") else 77
    text = torch.ones(n, context, dtype=torch.long, device=device)
    seconds = 0.25 if dry else 1.0
    waves = torch.randn(n * sizes.segments, int(44100 * seconds), device=device) * 3000
    return {
        "roberta": (RobertaModel(roberta, add_pooling_layer=False), lambda m: m(input_ids=ids)),
        "efficientnet": (EfficientNet.from_name("efficientnet-b0"), lambda m: m.extract_features(images)),
        "clip_image": (clip_net, lambda m: m.encode_image(images)),
        "clip_text": (clip_net, lambda m: m.encode_text(text)),
        "esresnext": (esresnext.ESResNeXtFBSP.from_config(audio_cfg), lambda m: m(waves)),
    }


def bench_encoders(sizes: Sizes, dry: bool, device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {"clips_per_batch": sizes.clips, "frames": sizes.frames, "segments": sizes.segments,
                           "tokens": sizes.tokens}
    totals = {_name(d): 0.0 for d in autocast_dtypes(device)}
    for name, (model, call) in encoder_jobs(sizes, dry, device).items():
        model = model.to(device).eval()
        reset_peak(device)
        row = {}
        for dtype in autocast_dtypes(device):
            def run() -> Any:
                with torch.inference_mode(), _amp(device, dtype):
                    return call(model)
            seconds = timed(run, device, sizes.repeats)
            row[f"{_name(dtype)}_ms_per_batch"] = round(seconds * 1e3, 2)
            totals[_name(dtype)] += seconds
        row["peak_mib"] = peak_memory_mib(device)
        out[name] = row
        model.cpu()
    out["clips_per_s"] = {key: round(sizes.clips / value, 2) for key, value in totals.items() if value > 0}
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
        out[_name(dtype)] = {"ms_per_step": round(seconds * 1e3, 2), "samples_per_s": round(sizes.batch / seconds, 1),
                             "peak_mib": peak_memory_mib(device)}
    return out


def bench_ot(sizes: Sizes, device: torch.device, with_keops: bool) -> dict[str, Any]:
    from hcm.model.ot import sinkhorn_transport

    backends = ["torch"] + (["keops"] if with_keops else [])
    rows = []
    for nodes in sizes.ot_sizes:
        gen = torch.Generator().manual_seed(nodes)
        x = torch.nn.functional.normalize(torch.randn(1, nodes, 64, generator=gen), dim=-1).to(device).requires_grad_()
        y = torch.nn.functional.normalize(torch.randn(1, nodes, 64, generator=gen), dim=-1).to(device).requires_grad_()
        row: dict[str, Any] = {"nodes": nodes}
        for backend in backends:
            def run() -> None:
                sinkhorn_transport(x, y, x, eps=0.1, n_iters=50, p=1, backend=backend).square().sum().backward()
            reset_peak(device)
            try:
                row[f"{backend}_ms"] = round(timed(run, device, sizes.repeats) * 1e3, 2)
                row[f"{backend}_peak_mib"] = peak_memory_mib(device)
            except (RuntimeError, MemoryError) as error:  # out of memory at the largest sizes
                row[f"{backend}_error"] = str(error).splitlines()[0][:200]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        rows.append(row)
    faster = [r["nodes"] for r in rows if "keops_ms" in r and ("torch_ms" not in r or r["keops_ms"] < r["torch_ms"])]
    return {"batch": 1, "d": 64, "n_iters": 50, "rows": rows,
            "keops_faster_from_nodes": min(faster) if faster else None}


def run_section(results: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    start = time.perf_counter()
    try:
        results[name] = work()
    except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' numbers
        results[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
    results[name]["seconds"] = round(time.perf_counter() - start, 2)
    print(f"[{name}] done in {results[name]['seconds']} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry", action="store_true", help="tiny sizes: checks that every section runs")
    parser.add_argument("--dataset", default="meld", help="shipped settings for the training step")
    parser.add_argument("--sections", default="encoders,train_step,ot")
    parser.add_argument("--keops", choices=("auto", "yes", "no"), default="auto",
                        help="time KeOps too (auto: on CUDA only; on a CPU each formula compiles for seconds)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sizes = DRY if args.dry else PAPER
    torch.manual_seed(0)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "dry": args.dry, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    wanted = set(args.sections.split(","))
    with_keops = args.keops == "yes" or (args.keops == "auto" and device.type == "cuda")
    if "encoders" in wanted:
        run_section(results, "encoders", lambda: bench_encoders(sizes, args.dry, device))
    if "train_step" in wanted:
        run_section(results, "train_step", lambda: bench_train_step(sizes, args.dry, device, args.dataset))
    if "ot" in wanted:
        run_section(results, "ot", lambda: bench_ot(sizes, device, with_keops))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
