"""Benchmark of ``hcm extract`` (run by hand; numbers go to benchmarks/RESULTS.md).

1. Overlap: tiny-profile extraction of a synthetic corpus; wall time of the shard loop against
   the seconds spent inside the encoders (decoding runs in worker processes, writing is cheap).
2. Memory: peak RSS of the main process for two corpus sizes, each in a fresh process.
3. FLOPs per clip of the paper profile, counted with ``torch.utils.flop_counter.FlopCounterMode``
   on the real architectures at paper sizes (random weights), and the implied clips/s on a GPU.

    python benchmarks/bench_extract.py overlap --clips 200
    python benchmarks/bench_extract.py memory --clips 200 600
    python benchmarks/bench_extract.py flops --tokens 128 --gpu-tflops 200
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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


def flops(tokens: int, gpu_tflops: float) -> None:
    import torch
    from efficientnet_pytorch import EfficientNet
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import RobertaConfig, RobertaModel

    from hcm.pipeline.encoders import clip, esresnext
    from hcm.pipeline.profiles import get_profile

    sampling = get_profile("paper").sampling
    roberta = RobertaModel(RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                         intermediate_size=4096, max_position_embeddings=514), add_pooling_layer=False)
    jobs = {
        f"roberta-large ({tokens} tokens)": (roberta, lambda m: m(input_ids=torch.ones(1, tokens, dtype=torch.long))),
        f"efficientnet-b0 ({sampling.frames} frames)": (
            EfficientNet.from_name("efficientnet-b0"), lambda m: m.extract_features(torch.randn(sampling.frames, 3, 224, 224))),
        f"clip-rn50 image ({sampling.frames} frames) + text": (
            clip.CLIP.from_config(clip.rn50_config()),
            lambda m: (m.encode_image(torch.randn(sampling.frames, 3, 224, 224)),
                       m.encode_text(torch.ones(1, 77, dtype=torch.long)))),
        f"esresnext-fbsp ({sampling.segments} x {sampling.segment_seconds} s)": (
            esresnext.ESResNeXtFBSP.from_config(esresnext.released_config()),
            lambda m: m(torch.randn(sampling.segments, int(sampling.audio_rate * sampling.segment_seconds)) * 3000)),
    }
    total = 0
    for name, (model, call) in jobs.items():
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            call(model.eval())
        total += counter.get_total_flops()
        print(f"{name}: {counter.get_total_flops() / 1e9:.1f} GFLOP")
    print(f"total per clip: {total / 1e9:.1f} GFLOP; at {gpu_tflops} TFLOP/s sustained: "
          f"{gpu_tflops * 1e12 / total:.0f} clips/s (compute bound, best case)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("overlap")
    one.add_argument("--clips", type=int, default=200)
    one.add_argument("--workers", type=int, default=1)
    many = sub.add_parser("memory")
    many.add_argument("--clips", type=int, nargs="+", default=[200, 2000])
    many.add_argument("--workers", type=int, default=1)
    count = sub.add_parser("flops")
    count.add_argument("--tokens", type=int, default=128)
    count.add_argument("--gpu-tflops", type=float, default=200.0)
    args = parser.parse_args()
    if args.what == "overlap":
        overlap(args.clips, args.workers)
    elif args.what == "memory":
        memory(args.clips, args.workers)
    else:
        flops(args.tokens, args.gpu_tflops)


if __name__ == "__main__":
    main()
