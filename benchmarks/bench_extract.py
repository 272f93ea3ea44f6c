"""Benchmark of ``hcm extract`` (run by hand; numbers go to benchmarks/RESULTS.md).

1. Overlap: tiny-profile extraction of a synthetic corpus; wall time of the shard loop against
   the seconds spent inside the encoders (decoding runs in worker processes, writing is cheap).
2. Memory: peak RSS of the main process for two corpus sizes, each in a fresh process.
3. FLOPs per clip of the paper profile, counted with ``torch.utils.flop_counter.FlopCounterMode``
   on the real architectures at paper sizes (random weights), and the implied clips/s on a GPU.
4. Paper: the paper profile on sample clips with the weights of ``--weights-dir`` (the real
   files, or the stand-ins of ``benchmarks/standin_weights.py``) in ``--precision``: clips/s,
   seconds per clip per encoder, peak RSS, and the encoders' GFLOP/s against the measured 2-thread
   float32 matmul peak (``benchmarks/matmul_peak.py``); FLOPs are the counted per-unit FLOPs times
   the rows written. Beside the shard loop's seconds per clip it gives the same encoders' networks
   alone on the same batches, inputs made beforehand and batched at their best
   (``benchmarks/best_batched.py``), and the ratio of the two.
5. Encoders: each paper encoder's forward pass alone on a batch of random inputs, in float32 and
   bfloat16 (and float16 on CUDA), with the CNNs' weights and inputs contiguous or channels-last
   (and with ``--compile``, under ``torch.compile`` with inductor's weight freezing), the CNNs on
   the CPU in passes of ``--rows`` rows (default 8, as the encoders run): seconds per unit (frame,
   segment, 40-token window, utterance), GFLOP/s, and the output's relative difference from
   float32 contiguous. Without
   ``--weights-dir`` the networks have random weights (speed only; any device).

    python benchmarks/bench_extract.py overlap --clips 200
    python benchmarks/bench_extract.py memory --clips 200 600
    python benchmarks/bench_extract.py flops --tokens 128 --gpu-tflops 200
    python benchmarks/bench_extract.py paper --dataset mosei --clips 16 --weights-dir DIR --precision auto
    python benchmarks/bench_extract.py encoders --weights-dir DIR --threads 1 [--rows 8] [--compile] [--device cuda]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def run_extract(clips: int, workers: int, folder: Path) -> dict:
    """Make a corpus of ``clips`` clips and extract it with the tiny profile; timings and peak RSS."""
    from hcm.pipeline.extract import extract
    from hcm.pipeline.sample import make_sample

    make_sample("mosei", folder / "corpus", n=clips, seed=0, progress=False)
    started = time.perf_counter()
    summary = extract("mosei", folder / "corpus", folder / "cache", "tiny", workers=workers, progress=False,
                      shard_size=100)
    return {"clips": clips, "workers": workers, "wall_s": round(time.perf_counter() - started, 2),
            "loop_s": round(summary.loop_seconds, 2), "encoder_s": round(summary.encoder_seconds, 2),
            "extracted": summary.extracted, "clips_per_s": round(summary.extracted / summary.loop_seconds, 2),
            "loop_over_encoders": round(summary.loop_seconds / summary.encoder_seconds, 3),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def overlap(clips: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run_extract(clips, workers, Path(tmp))))


def memory(sizes: list[int], workers: int) -> None:
    for clips in sizes:  # a fresh process per size, so peak RSS is not shared
        subprocess.run([sys.executable, __file__, "overlap", "--clips", str(clips), "--workers", str(workers)],
                       check=True)


def paper_architectures() -> dict[str, Any]:
    """The paper encoders' networks at full size with random weights (CLIP RN50 serves both towers)."""
    from efficientnet_pytorch import EfficientNet
    from transformers import RobertaConfig, RobertaModel

    from hcm.pipeline.encoders import clip, esresnext

    roberta = RobertaModel(RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                         intermediate_size=4096, max_position_embeddings=514), add_pooling_layer=False)
    rn50 = clip.CLIP.from_config(clip.rn50_config())
    return {"roberta": roberta, "efficientnet": EfficientNet.from_name("efficientnet-b0"), "clip_image": rn50,
            "clip_text": rn50, "esresnext": esresnext.ESResNeXtFBSP.from_config(esresnext.released_config())}


def unit_flops(tokens: int) -> dict[str, float]:
    """FLOPs of one unit of each paper encoder, counted with ``FlopCounterMode`` on the real
    architectures (random weights): a RoBERTa-large window of ``tokens`` tokens, one frame
    (EfficientNet-b0, CLIP RN50 image), one utterance (CLIP text), one audio segment (ESResNeXt)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hcm.pipeline.profiles import get_profile

    sampling = get_profile("paper").sampling
    segment = int(sampling.audio_rate * sampling.segment_seconds)
    calls = {
        "roberta": lambda m: m(input_ids=torch.ones(1, tokens, dtype=torch.long)),
        "efficientnet": lambda m: m.extract_features(torch.randn(1, 3, 224, 224)),
        "clip_image": lambda m: m.encode_image(torch.randn(1, 3, 224, 224)),
        "clip_text": lambda m: m.encode_text(torch.ones(1, 77, dtype=torch.long)),
        "esresnext": lambda m: m(torch.randn(1, segment) * 3000),
    }
    networks = paper_architectures()
    jobs = {name: (networks[name], call) for name, call in calls.items()}
    counted = {}
    for name, (model, call) in jobs.items():
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            call(model.eval())
        counted[name] = float(counter.get_total_flops())
    return counted


def flops(tokens: int, gpu_tflops: float) -> None:
    from hcm.pipeline.profiles import get_profile

    sampling = get_profile("paper").sampling
    units = unit_flops(tokens)
    per_clip = {f"roberta-large ({tokens} tokens)": units["roberta"],
                f"efficientnet-b0 ({sampling.frames} frames)": units["efficientnet"] * sampling.frames,
                f"clip-rn50 image ({sampling.frames} frames) + text": units["clip_image"] * sampling.frames
                + units["clip_text"],
                f"esresnext-fbsp ({sampling.segments} x {sampling.segment_seconds} s)": units["esresnext"]
                * sampling.segments}
    for name, value in per_clip.items():
        print(f"{name}: {value / 1e9:.1f} GFLOP")
    total = sum(per_clip.values())
    print(f"total per clip: {total / 1e9:.1f} GFLOP; at {gpu_tflops} TFLOP/s sustained: "
          f"{gpu_tflops * 1e12 / total:.0f} clips/s (compute bound, best case)")


ROW_STREAMS = {"roberta": "roberta", "efficientnet": "efficientnet", "clip_image": "clip_image",
               "clip_text": "clip_text", "esresnext": "esresnext"}  # encoder -> the stream whose rows are its units


def timed_encoders(seconds: dict[str, float], cpu: dict[str, float], built: dict[str, Any] | None = None,
                   batches: dict[str, list] | None = None) -> Callable[[], None]:
    """Make every encoder that ``extract`` builds add its ``encode`` wall seconds to ``seconds[name]``
    and the process's CPU seconds (all threads) to ``cpu[name]``, keep it in ``built[name]`` and
    each batch it is given, ``(utterances, prepared)``, in ``batches[name]``; returns the function
    that undoes it."""
    from hcm.pipeline import extract as extract_module

    original = extract_module.create_encoder

    def create_timed(name: str, *args: Any, **kwargs: Any) -> Any:
        encoder = original(name, *args, **kwargs)
        encode = encoder.encode
        if built is not None:
            built[name] = encoder

        def timed_encode(*call_args: Any) -> Any:
            cpu.setdefault("first_encode_cpu", time.process_time())  # the shard loop's first batch
            if batches is not None:
                batches.setdefault(name, []).append(call_args)
            started, started_cpu = time.perf_counter(), time.process_time()
            try:
                return encode(*call_args)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - started_cpu

        encoder.encode = timed_encode
        return encoder

    extract_module.create_encoder = create_timed
    return lambda: setattr(extract_module, "create_encoder", original)


def stream_rows(cache: Path) -> dict[str, int]:
    """Rows each unit stream holds over the whole cache (frames, segments, tokens, utterances)."""
    from hcm.cache.reader import FeatureCache

    features = FeatureCache(cache, features=list(ROW_STREAMS.values()))
    rows = dict.fromkeys(ROW_STREAMS, 0)
    for index in range(len(features)):
        item = features[index]
        for encoder, stream in ROW_STREAMS.items():
            rows[encoder] += len(item.features[stream])
    features.close()
    return rows


def paper(dataset: str, clips: int, weights_dir: Path, workers: int, batch_size: int, precision: str) -> None:
    """Paper-profile extraction of ``clips`` sample clips: clips/s, seconds per clip per encoder,
    peak RSS, and the encoders' GFLOP/s against the measured 2-thread float32 matmul peak."""
    from hcm.pipeline.extract import extract
    from hcm.pipeline.profiles import WeightOptions
    from hcm.pipeline.sample import make_sample

    peak = measured_peak(threads=2)
    load_before = os.getloadavg()
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    built: dict[str, Any] = {}
    batches: dict[str, list] = {}
    undo = timed_encoders(seconds, cpu, built, batches)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_sample(dataset, folder / "corpus", n=clips, seed=0, progress=False)
        try:
            summary = extract(dataset, folder / "corpus", folder / "cache", "paper", progress=False, workers=workers,
                              batch_size=batch_size, weights=WeightOptions(weights_dir=weights_dir),
                              precision=precision)
        finally:
            undo()
        loop_cpu = time.process_time() - cpu.pop("first_encode_cpu")  # main process, from the first batch on
        rows = stream_rows(folder / "cache")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the FLOP count builds its models
    n = summary.extracted
    best, best_cpu = _script("best_batched.py").best_seconds(built, batches)
    del built, batches
    tokens = max(1, round(rows["roberta"] / n))
    units = unit_flops(tokens)
    units["roberta"] /= tokens  # per token at the mean window length
    gflop = {name: units[name] * rows[name] / 1e9 for name in ROW_STREAMS}
    encoder_s = sum(seconds.get(name, 0.0) for name in ROW_STREAMS)
    report = {
        "dataset": dataset, "clips": n, "precision": summary.precision, "workers": workers,
        "inference_threads": inference_thread_count(),
        "wall_s": round(summary.seconds, 1), "loop_s": round(summary.loop_seconds, 1),
        "clips_per_s": round(n / summary.loop_seconds, 4),
        "s_per_clip": {name: round(value / n, 2) for name, value in sorted(seconds.items())},
        "best_batched_s_per_clip": {name: round(value / n, 2) for name, value in sorted(best.items())},
        "pipeline_s_per_clip": round(summary.loop_seconds / n, 3),
        "best_batched_total_s_per_clip": round(sum(best.values()) / n, 3),
        "pipeline_over_best_batched": round(summary.loop_seconds / sum(best.values()), 3),
        "best_batched_cpu_s_per_clip": {name: round(value / n, 2) for name, value in sorted(best_cpu.items())},
        "pipeline_cpu_s_per_clip": round(loop_cpu / n, 3),
        "pipeline_over_best_batched_cpu": round(loop_cpu / sum(best_cpu.values()), 3),
        "cpu_s_per_clip": {name: round(value / n, 2) for name, value in sorted(cpu.items())},
        "rows_per_clip": {name: round(value / n, 1) for name, value in rows.items()},
        "gflop_per_clip": {name: round(value / n, 1) for name, value in gflop.items()},
        "gflops_achieved": {name: round(gflop[name] / seconds[name], 1) for name in ROW_STREAMS if seconds.get(name)},
        "gflops_encoders": round(sum(gflop.values()) / encoder_s, 1),
        "matmul_peak": peak,
        "share_of_peak": round(sum(gflop.values()) / encoder_s / peak["best_gflops"], 3),
        "peak_rss_mib": round(peak_rss, 1),
        "loadavg_before": [round(x, 1) for x in load_before],
        "loadavg_after": [round(x, 1) for x in os.getloadavg()],
    }
    print(json.dumps(report))


def _script(name: str) -> Any:
    """A module of benchmarks/ (not a package), imported by path."""
    spec = importlib.util.spec_from_file_location(Path(name).stem, Path(__file__).with_name(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured_peak(threads: int) -> dict[str, float]:
    """``matmul_peak.py``'s float32 GEMM peak with ``threads`` threads, measured now."""
    return _script("matmul_peak.py").matmul_peak(threads=threads)


def inference_thread_count() -> int:
    """The torch threads ``hcm extract`` gives the encoders on this machine's CPU."""
    import torch

    from hcm.pipeline.decoding import inference_threads

    with inference_threads(torch.device("cpu")):
        return torch.get_num_threads()


def paper_networks(weights_dir: Path | None) -> dict[str, Any]:
    """The paper encoders' networks with the weights of ``weights_dir``, or at random without it."""
    if weights_dir is None:
        return paper_architectures()
    from hcm.pipeline.encoders.base import create_encoder
    from hcm.pipeline.profiles import WeightOptions, get_profile, resolve_weights

    profile = get_profile("paper")
    weights = resolve_weights(profile, WeightOptions(weights_dir=weights_dir), check_parser=False)
    return {name: create_encoder(name, profile, weights, "cpu").model for name in ROW_STREAMS}


def encoder_jobs(weights_dir: Path | None, batch: int) -> dict[str, tuple[Any, Callable[[Any, Any], Any], Any, int]]:
    """Per paper encoder: (network, forward(network, input), a random input batch, units in it)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(batch, 3, 224, 224, generator=generator)  # (B, 3, S, S), normalised-pixel scale
    build = paper_networks(weights_dir)
    tokens = torch.randint(5, 40000, (batch, 40), generator=generator)  # (B, 40) RoBERTa window ids
    texts = torch.randint(1, 40000, (batch, 77), generator=generator)  # (B, 77) CLIP tokens, one EOT per row
    texts[:, 20] = 49407
    return {
        "roberta": (build["roberta"], lambda m, x: m(input_ids=x).last_hidden_state, tokens, batch),
        "efficientnet": (build["efficientnet"], lambda m, x: m.extract_features(x).float().mean((2, 3)),
                         frames, batch),
        "clip_image": (build["clip_image"], lambda m, x: m.encode_image(x), frames, batch),
        "clip_text": (build["clip_text"], lambda m, x: m.encode_text(x), texts, batch),
        "esresnext": (build["esresnext"], lambda m, x: m(x),
                      torch.randn(batch, 44100, generator=generator) * 3000, batch),  # (B, n): 1 s segments
    }


def time_forward(forward: Callable[[Any], Any], repeats: int, device: Any) -> tuple[float, Any]:
    """Best wall seconds of ``repeats`` calls after one warm-up, and the last output (float32)."""
    import torch

    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        forward(None)
        wait()
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            output = forward(None)
            wait()
            best = min(best, time.perf_counter() - started)
    return best, output.float()


def variant(model: Any, forward: Callable, data: Any, precision: str, layout: Any, compiled: bool,
            cnn: bool) -> Callable:
    """``forward`` of ``model`` on ``data`` in ``precision`` and memory ``layout`` (4-D tensors only),
    on ``data``'s device; a ``cnn`` on the CPU in passes of ``CPU_ROWS_PER_FORWARD`` rows, as the
    encoders run it (the text encoders take their batch in one pass)."""
    import torch

    from hcm.pipeline.encoders.base import forward_rows
    from hcm.pipeline.encoders.precision import autocast

    model.to(memory_format=layout)
    if data.dim() == 4:
        data = data.contiguous(memory_format=layout)
    call = torch.compile(forward) if compiled else forward

    def run(_: Any) -> Any:
        with autocast(precision, data.device):
            return forward_rows(lambda rows: call(model, rows), data) if cnn else call(model, data)

    return run


def encoders(weights_dir: Path | None, batch: int, threads: int, repeats: int, compiled: bool, device: str,
             rows: int) -> None:
    """Each paper encoder's forward alone, per precision and layout (module docstring, 5.)."""
    import torch
    import torch._inductor.config

    from hcm.pipeline.encoders import base

    base.CPU_ROWS_PER_FORWARD = rows  # read by forward_rows at each call
    torch.set_num_threads(threads)
    torch._inductor.config.freezing = True  # --compile: BatchNorm folded into the frozen weights
    chosen = torch.device(device)
    units = unit_flops(40)
    load_before = os.getloadavg()
    peak = measured_peak(threads=2)
    for name, (model, forward, data, count) in encoder_jobs(weights_dir, batch).items():
        model, data = model.to(chosen).eval(), data.to(chosen)
        precisions = ("float32", "bfloat16") + (("float16",) if chosen.type == "cuda" else ())
        cnn = data.dim() == 4 or name == "esresnext"
        layouts = [torch.contiguous_format, torch.channels_last] if cnn else [torch.contiguous_format]
        settings = [(p, layout, False) for p in precisions for layout in layouts]
        settings += [("bfloat16", layouts[-1], True)] if compiled and name in ("clip_image", "efficientnet") else []
        reference = None
        for precision, layout, compile_it in settings:
            started = time.perf_counter()
            run = variant(model, forward, data, precision, layout, compile_it, cnn)
            seconds, output = time_forward(run, repeats, chosen)
            reference = output if reference is None else reference
            print(json.dumps({
                "encoder": name, "precision": precision, "layout": str(layout).split(".")[-1], "compiled": compile_it,
                "s_per_unit": round(seconds / count, 4), "gflops": round(units[name] * count / seconds / 1e9, 1),
                "rel_diff": round(float((output - reference).norm() / reference.norm()), 4),
                "first_call_s": round(time.perf_counter() - started - (repeats * seconds), 1)}), flush=True)
        model.cpu()
    name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else "cpu"
    print(json.dumps({"device": name, "threads": threads, "batch": batch, "rows_per_pass": base.CPU_ROWS_PER_FORWARD,
                      "matmul_peak_2_threads": peak,
                      "loadavg_before": [round(x, 1) for x in load_before],
                      "loadavg_after": [round(x, 1) for x in os.getloadavg()]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("overlap")
    one.add_argument("--clips", type=int, default=200)
    one.add_argument("--workers", type=int, default=1)
    many = sub.add_parser("memory")
    many.add_argument("--clips", type=int, nargs="+", default=[200, 2000])
    many.add_argument("--workers", type=int, default=1)
    full = sub.add_parser("paper", help="paper-profile extraction with weights from --weights-dir")
    full.add_argument("--dataset", default="mosei")
    full.add_argument("--clips", type=int, default=16)
    full.add_argument("--weights-dir", type=Path, required=True)
    full.add_argument("--workers", type=int, default=1)
    full.add_argument("--batch-size", type=int, default=16)
    full.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    alone = sub.add_parser("encoders", help="each paper encoder's forward alone, per precision and layout")
    alone.add_argument("--weights-dir", type=Path, help="weights to load (default: random weights)")
    alone.add_argument("--device", default="cpu")
    alone.add_argument("--batch", type=int, default=16)
    alone.add_argument("--threads", type=int, default=1)
    alone.add_argument("--repeats", type=int, default=3)
    alone.add_argument("--rows", type=int, default=8, help="rows per forward pass on the CPU")
    alone.add_argument("--compile", action="store_true", help="also bfloat16 channels-last under torch.compile")
    count = sub.add_parser("flops")
    count.add_argument("--tokens", type=int, default=128)
    count.add_argument("--gpu-tflops", type=float, default=200.0)
    args = parser.parse_args()
    if args.what == "overlap":
        overlap(args.clips, args.workers)
    elif args.what == "memory":
        memory(args.clips, args.workers)
    elif args.what == "paper":
        paper(args.dataset, args.clips, args.weights_dir, args.workers, args.batch_size, args.precision)
    elif args.what == "encoders":
        encoders(args.weights_dir, args.batch, args.threads, args.repeats, args.compile, args.device, args.rows)
    else:
        flops(args.tokens, args.gpu_tflops)


if __name__ == "__main__":
    main()
