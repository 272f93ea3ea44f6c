"""Benchmark of ``hcm extract`` (run by hand; numbers go to benchmarks/RESULTS.md).

1. Overlap: tiny-profile extraction of a synthetic corpus; wall time of the shard loop against
   the seconds spent inside the encoders (decoding runs in worker processes, writing is cheap).
2. Memory: peak RSS of the main process for two corpus sizes, each in a fresh process.
3. FLOPs per clip of the paper profile, counted with ``torch.utils.flop_counter.FlopCounterMode``
   on the real architectures at paper sizes (random weights), and the implied clips/s on a GPU.
4. Paper: the paper profile on sample clips with the weights of ``--weights-dir`` (the real
   files, or the stand-ins of ``benchmarks/standin_weights.py``): clips/s, seconds per clip per
   encoder, peak RSS, and the encoders' GFLOP/s against the measured 2-thread matmul peak
   (``benchmarks/matmul_peak.py``); FLOPs are the counted per-unit FLOPs times the rows written.

    python benchmarks/bench_extract.py overlap --clips 200
    python benchmarks/bench_extract.py memory --clips 200 600
    python benchmarks/bench_extract.py flops --tokens 128 --gpu-tflops 200
    python benchmarks/bench_extract.py paper --dataset mosei --clips 16 --weights-dir DIR
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


def unit_flops(tokens: int) -> dict[str, float]:
    """FLOPs of one unit of each paper encoder, counted with ``FlopCounterMode`` on the real
    architectures (random weights): a RoBERTa-large window of ``tokens`` tokens, one frame
    (EfficientNet-b0, CLIP RN50 image), one utterance (CLIP text), one audio segment (ESResNeXt)."""
    import torch
    from efficientnet_pytorch import EfficientNet
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import RobertaConfig, RobertaModel

    from hcm.pipeline.encoders import clip, esresnext
    from hcm.pipeline.profiles import get_profile

    sampling = get_profile("paper").sampling
    roberta = RobertaModel(RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                         intermediate_size=4096, max_position_embeddings=514), add_pooling_layer=False)
    rn50 = clip.CLIP.from_config(clip.rn50_config())
    segment = int(sampling.audio_rate * sampling.segment_seconds)
    jobs = {
        "roberta": (roberta, lambda m: m(input_ids=torch.ones(1, tokens, dtype=torch.long))),
        "efficientnet": (EfficientNet.from_name("efficientnet-b0"),
                         lambda m: m.extract_features(torch.randn(1, 3, 224, 224))),
        "clip_image": (rn50, lambda m: m.encode_image(torch.randn(1, 3, 224, 224))),
        "clip_text": (rn50, lambda m: m.encode_text(torch.ones(1, 77, dtype=torch.long))),
        "esresnext": (esresnext.ESResNeXtFBSP.from_config(esresnext.released_config()),
                      lambda m: m(torch.randn(1, segment) * 3000)),
    }
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


def timed_encoders(seconds: dict[str, float], cpu: dict[str, float]) -> Callable[[], None]:
    """Make every encoder that ``extract`` builds add its ``encode`` wall seconds to ``seconds[name]``
    and the process's CPU seconds (all threads) to ``cpu[name]``; returns the function that undoes it."""
    from hcm.pipeline import extract as extract_module

    original = extract_module.create_encoder

    def create_timed(name: str, *args: Any, **kwargs: Any) -> Any:
        encoder = original(name, *args, **kwargs)
        encode = encoder.encode

        def timed_encode(*call_args: Any) -> Any:
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


def paper(dataset: str, clips: int, weights_dir: Path, workers: int, batch_size: int) -> None:
    """Paper-profile extraction of ``clips`` sample clips: clips/s, seconds per clip per encoder,
    peak RSS, and the encoders' GFLOP/s against the measured 2-thread matmul peak."""
    import torch

    from hcm.pipeline.extract import extract
    from hcm.pipeline.profiles import WeightOptions
    from hcm.pipeline.sample import make_sample

    spec = importlib.util.spec_from_file_location("matmul_peak", Path(__file__).with_name("matmul_peak.py"))
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    peak = probe.matmul_peak(threads=torch.get_num_threads())
    load_before = os.getloadavg()
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    undo = timed_encoders(seconds, cpu)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_sample(dataset, folder / "corpus", n=clips, seed=0, progress=False)
        try:
            summary = extract(dataset, folder / "corpus", folder / "cache", "paper", progress=False, workers=workers,
                              batch_size=batch_size, weights=WeightOptions(weights_dir=weights_dir))
        finally:
            undo()
        rows = stream_rows(folder / "cache")
    n = summary.extracted
    tokens = max(1, round(rows["roberta"] / n))
    units = unit_flops(tokens)
    units["roberta"] /= tokens  # per token at the mean window length
    gflop = {name: units[name] * rows[name] / 1e9 for name in ROW_STREAMS}
    encoder_s = sum(seconds.get(name, 0.0) for name in ROW_STREAMS)
    report = {
        "dataset": dataset, "clips": n, "threads": torch.get_num_threads(), "workers": workers,
        "wall_s": round(summary.seconds, 1), "loop_s": round(summary.loop_seconds, 1),
        "clips_per_s": round(n / summary.loop_seconds, 4),
        "s_per_clip": {name: round(value / n, 2) for name, value in sorted(seconds.items())},
        "cpu_s_per_clip": {name: round(value / n, 2) for name, value in sorted(cpu.items())},
        "rows_per_clip": {name: round(value / n, 1) for name, value in rows.items()},
        "gflop_per_clip": {name: round(value / n, 1) for name, value in gflop.items()},
        "gflops_achieved": {name: round(gflop[name] / seconds[name], 1) for name in ROW_STREAMS if seconds.get(name)},
        "gflops_encoders": round(sum(gflop.values()) / encoder_s, 1),
        "matmul_peak": peak,
        "share_of_peak": round(sum(gflop.values()) / encoder_s / peak["best_gflops"], 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_before": [round(x, 1) for x in load_before],
        "loadavg_after": [round(x, 1) for x in os.getloadavg()],
    }
    print(json.dumps(report))


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
    count = sub.add_parser("flops")
    count.add_argument("--tokens", type=int, default=128)
    count.add_argument("--gpu-tflops", type=float, default=200.0)
    args = parser.parse_args()
    if args.what == "overlap":
        overlap(args.clips, args.workers)
    elif args.what == "memory":
        memory(args.clips, args.workers)
    elif args.what == "paper":
        paper(args.dataset, args.clips, args.weights_dir, args.workers, args.batch_size)
    else:
        flops(args.tokens, args.gpu_tflops)


if __name__ == "__main__":
    main()
