"""Benchmark hcm.model.ot against POT and geomloss (numbers go to benchmarks/RESULTS.md).

Run by hand on a quiet machine:

    .venv/bin/python benchmarks/bench_ot.py peers      # B=64, M=N=50, d=256, 50 iterations
    .venv/bin/python benchmarks/bench_ot.py scaling    # keops vs torch at M=N=1000 and 10000
    .venv/bin/python benchmarks/bench_ot.py serial     # one sample: fused CPU vs torch scaling path

Every timing is forward + backward of a loss on ``H^T G`` (Eq. 12): the plan H between the
point clouds x and y is applied to the source features G = x. Each method is timed on the same
tensors, and every method that takes a cost matrix gets it from the same builder
(``PointCloudCost.dense``), so the differences are the solvers'. The median of ``--repeats`` runs
is reported after one warm-up run (KeOps and hcm's fused CPU kernel compile there, once).
``scaling`` runs each configuration in a fresh subprocess to read its peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable

import torch

from hcm.model.ot import PointCloudCost, sinkhorn, sinkhorn_transport
from hcm.model.ot.dense import LogSinkhorn, ScalingSinkhorn
from hcm.model.ot.fused_cpu import FusedScalingSinkhorn

BASELINE = "hcm auto (torch, fused CPU scaling path)"  # the method the others are compared with; never skipped


def _inputs(batch: int, m: int, n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm random features, like normalised graph node features: (B, M, d), (B, N, d)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(batch, m, d, generator=gen), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(batch, n, d, generator=gen), dim=-1)
    return x.requires_grad_(), y.requires_grad_()


def _from_plan(plan_fn: Callable[[torch.Tensor], torch.Tensor], p: int):
    """A method that builds the dense cost, gets a plan from ``plan_fn`` and transports x."""

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        plan = plan_fn(PointCloudCost(x, y, p).dense())  # (B, M, N)
        return torch.bmm(plan.transpose(1, 2), x)  # (B, N, d)

    return run


def _peer_methods(eps: float, n_iters: int, p: int) -> dict[str, Callable]:
    import geomloss.ot
    import ot
    from ot.batch import solve_batch

    def pot_per_sample(cost):
        return torch.stack([
            ot.bregman.sinkhorn_log(torch.full((c.shape[0],), 1 / c.shape[0]),
                                    torch.full((c.shape[1],), 1 / c.shape[1]), c,
                                    reg=eps, numItermax=n_iters, stopThr=-1.0, warn=False)
            for c in cost
        ])

    def naive_loop(cost):  # a plain batched log-domain loop, autograd through every step
        logk = -cost / eps
        loga = torch.full(cost.shape[:2], 1 / cost.shape[1]).log()
        logb = torch.full(cost.shape[::2], 1 / cost.shape[2]).log()
        u = torch.zeros_like(loga)
        for _ in range(n_iters):
            v = logb - torch.logsumexp(logk + u[:, :, None], 1)
            u = loga - torch.logsumexp(logk + v[:, None, :], 2)
        return (logk + u[:, :, None] + v[:, None, :]).exp()

    def forced(solver):  # one of hcm's torch paths on its own, uniform marginals
        def plan(cost):
            a, b = torch.full(cost.shape[:2], 1 / cost.shape[1]), torch.full(cost.shape[::2], 1 / cost.shape[2])
            return solver.apply(-cost / eps, a, b, n_iters, n_iters)
        return plan

    return {
        BASELINE: lambda x, y: sinkhorn_transport(x, y, x, eps=eps, n_iters=n_iters, p=p),
        "hcm torch, unfused scaling path forced": _from_plan(forced(ScalingSinkhorn), p),
        "hcm torch, log path forced": _from_plan(forced(LogSinkhorn), p),
        "hcm keops (CPU)": lambda x, y: sinkhorn_transport(x, y, x, eps=eps, n_iters=n_iters, p=p, backend="keops"),
        "hcm pot (per sample)": _from_plan(lambda c: sinkhorn(c, eps=eps, n_iters=n_iters, backend="pot"), p),
        "POT sinkhorn_log per sample": _from_plan(pot_per_sample, p),
        "POT ot.batch.solve_batch sinkhorn autodiff": _from_plan(
            lambda c: solve_batch(c, reg=eps, max_iter=n_iters, tol=0.0, method="sinkhorn", grad="autodiff").plan, p),
        "POT ot.batch.solve_batch log_sinkhorn autodiff": _from_plan(
            lambda c: solve_batch(c, reg=eps, max_iter=n_iters, tol=0.0, method="log_sinkhorn",
                                  grad="autodiff").plan, p),
        "geomloss ot.solve_batch (annealing)": _from_plan(
            lambda c: geomloss.ot.solve_batch(c, reg=eps, max_iter=n_iters).plan, p),
        "plain batched torch loop (autograd)": _from_plan(naive_loop, p),
    }


def time_method(method: Callable, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Median seconds of forward + backward of ``sum(H^T G ** 2)``, after one warm-up."""
    times = []
    for _ in range(repeats + 1):
        x.grad = y.grad = None
        start = time.perf_counter()
        method(x, y).square().sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def peers(args: argparse.Namespace) -> None:
    x, y = _inputs(args.batch, args.nodes, args.nodes, args.dim)
    print(f"B={args.batch} M=N={args.nodes} d={args.dim} n_iters={args.iters} eps={args.eps} p={args.p}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    results = {}
    for name, method in _peer_methods(args.eps, args.iters, args.p).items():
        if name != BASELINE and any(word in name for word in args.skip):
            continue
        repeats = max(3, args.repeats // 10) if ("per sample" in name or "keops" in name) else args.repeats
        results[name] = time_method(method, x, y, repeats)
        print(f"  {name:50s} {results[name] * 1e3:9.2f} ms", flush=True)
    base = results[BASELINE]
    for name, seconds in results.items():
        print(f"  speed-up of hcm auto over {name:45s} {seconds / base:7.1f}x")


def one(args: argparse.Namespace) -> None:
    """A single scaling configuration; prints a JSON line with time and peak RSS."""
    x, y = _inputs(1, args.nodes, args.nodes, args.dim)
    method = lambda x, y: sinkhorn_transport(x, y, x, eps=args.eps, n_iters=args.iters, p=args.p, backend=args.backend)
    seconds = time_method(method, x, y, args.repeats)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"backend": args.backend, "nodes": args.nodes, "seconds": seconds, "peak_rss_mib": peak_mib}))


def scaling(args: argparse.Namespace) -> None:
    print(f"B=1 d={args.dim} n_iters={args.iters} eps={args.eps} p={args.p}, forward+backward of H^T G")
    for nodes in args.sizes:
        for backend in ("torch", "keops"):
            cmd = [sys.executable, __file__, "one", "--backend", backend, "--nodes", str(nodes), "--dim", str(args.dim),
                   "--iters", str(args.iters), "--eps", str(args.eps), "--p", str(args.p),
                   "--repeats", str(args.repeats)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"  M=N={nodes:6d} {backend:6s} did not finish within {args.timeout} s")
                continue
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                print(f"  M=N={nodes:6d} {backend:6s} failed (exit {done.returncode}): {tail}")
                continue
            row = json.loads(lines[-1])
            print(f"  M=N={nodes:6d} {backend:6s} {row['seconds']:9.3f} s   peak RSS {row['peak_rss_mib']:8.0f} MiB")


def serial(args: argparse.Namespace) -> None:
    """One sample (B=1) of growing size: the fused CPU path runs it on one thread, the torch
    scaling path's mat-vecs use every thread. Sinkhorn alone, forward + backward."""
    print(f"B=1 n_iters={args.iters} eps={args.eps}, {torch.get_num_threads()} threads, "
          f"forward+backward of sum(plan^2), median of {args.repeats}")
    for nodes in args.sizes:
        x, y = (t.detach() for t in _inputs(1, nodes, nodes, 3))
        logk = (PointCloudCost(x, y).dense() / -args.eps).requires_grad_()  # (1, M, N)
        a = torch.full((1, nodes), 1 / nodes)
        row = {}
        for name, solver in (("fused", FusedScalingSinkhorn), ("torch", ScalingSinkhorn)):
            method = lambda _x, _y: solver.apply(logk, a, a, args.iters, args.iters)
            row[name] = time_method(method, x, y, args.repeats)
        print(f"  M=N={nodes:6d} fused {row['fused'] * 1e3:9.2f} ms  torch {row['torch'] * 1e3:9.2f} ms  "
              f"fused is faster by {row['torch'] / row['fused']:5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("peers", "scaling", "serial", "one"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--p", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--skip", nargs="+", default=[], metavar="WORD",
                        help="peers: leave out the methods whose name contains WORD (e.g. keops: no compiling); "
                             "hcm auto always runs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", message=".*Sinkhorn did not converge.*")
    {"peers": peers, "scaling": scaling, "serial": serial, "one": one}[args.mode](args)


if __name__ == "__main__":
    main()
