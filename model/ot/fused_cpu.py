"""The torch backend's scaling-domain Sinkhorn (Eq. 11) fused into one compiled call per pass, on CPU.

:class:`FusedScalingSinkhorn` computes exactly what ``dense.ScalingSinkhorn`` computes (the same
update order, zero-mass handling, per-iteration vectors and reverse pass, ``grad_steps``
included), but each sample's whole forward, and separately its whole backward, runs inside
``sinkhorn_cpu.cpp`` with the sample's (M, N) kernel in cache, the batch split over
``torch.get_num_threads()`` OpenMP threads. On small problems the torch path spends its time in
hundreds of tiny batched mat-vec calls and autograd bookkeeping, not in arithmetic; this path
does not pay for them.

The kernel is built on first use (:mod:`hcm.model.ot.native`). When it cannot be built or
loaded, one ``RuntimeWarning`` names the cause and the torch path runs instead. Setting
``HCM_FUSED_SINKHORN=0`` switches the fused path off.
"""

from __future__ import annotations

import ctypes
import functools
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from hcm.model.ot import native
from hcm.model.ot.problem import input_grads

SOURCE = Path(__file__).with_name("sinkhorn_cpu.cpp")
SWITCH = "HCM_FUSED_SINKHORN"
# With fewer samples than threads, the fused path runs only samples of at most this many node
# pairs: on 2 threads it was 1.3x faster than the torch path for one 500 x 500 sample and 0.74x
# as fast for one 1000 x 1000 sample (benchmarks/RESULTS.md).
SERIAL_MAX_PAIRS = 512 * 512
THREAD_GRAIN = 1 << 20  # node-pair updates (about 0.3 ms of one thread's work) that justify another thread
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_INT, _PTR = ctypes.c_int64, ctypes.c_void_p
SIGNATURES = {  # function -> (leading int64 sizes, tensor pointers)
    "forward": (4, 8),
    "backward": (5, 10),
}


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The loaded kernel library, built on first use; None (after one warning) when unavailable."""
    try:
        library = native.load(SOURCE)
        for name, (sizes, pointers) in SIGNATURES.items():
            for suffix in SUFFIX.values():
                function = getattr(library, f"hcm_sinkhorn_{name}_{suffix}")  # AttributeError if missing
                function.argtypes = [_INT] * sizes + [_PTR] * pointers + [ctypes.c_int]
                function.restype = ctypes.c_int
    except (native.KernelUnavailable, AttributeError) as error:
        warnings.warn(f"fused CPU Sinkhorn unavailable ({error}); using the torch scaling path "
                      f"(set {SWITCH}=0 to skip the build)", RuntimeWarning, stacklevel=2)
        return None
    return library


def enabled() -> bool:
    """False when ``HCM_FUSED_SINKHORN`` is set to 0 (or "false", "off", "no")."""
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def use_fused(logk: Tensor, a: Tensor, b: Tensor) -> bool:
    """Whether :class:`FusedScalingSinkhorn` should solve this problem here: CPU, float32/64, the
    kernel built, and enough samples for the threads unless each sample is small (one thread
    runs one sample, while torch's mat-vecs use every thread on a single large sample)."""
    batch, m, n = logk.shape
    suited = batch >= torch.get_num_threads() or m * n <= SERIAL_MAX_PAIRS
    return (suited and logk.device.type == "cpu" and logk.dtype in SUFFIX and a.dtype == b.dtype == logk.dtype
            and enabled() and kernels() is not None)


def threads_for(batch: int, m: int, n: int, n_iters: int) -> int:
    """Threads for one call: torch's count, at most one per sample and one per THREAD_GRAIN
    node-pair updates, so that a tiny problem does not wait on waking (or, on a busy machine,
    scheduling) a second thread that would save it microseconds."""
    return max(1, min(torch.get_num_threads(), batch, batch * m * n * n_iters // THREAD_GRAIN))


def _call(name: str, sizes: list[int], tensors: list[Tensor]) -> None:
    """Run ``hcm_sinkhorn_<name>_<dtype>`` on contiguous tensors of one dtype; sizes start (B, M, N, n_iters)."""
    library = kernels()
    if library is None:
        raise RuntimeError("the fused CPU Sinkhorn kernel is unavailable (its warning says why); "
                           "dense_plan() uses the torch scaling path then")
    function = getattr(library, f"hcm_sinkhorn_{name}_{SUFFIX[tensors[0].dtype]}")
    if function(*sizes, *(t.data_ptr() for t in tensors), threads_for(*sizes[:4])) != 0:
        raise MemoryError(f"fused CPU Sinkhorn {name}: out of memory for its per-thread work vectors")


def _check(logk: Tensor, a: Tensor, b: Tensor, n_iters: int) -> None:
    """The kernel trusts its sizes and dtypes: refuse anything else before it runs."""
    if n_iters < 1 or logk.dim() != 3 or logk.shape != (a.shape[0], a.shape[1], b.shape[1]):
        raise ValueError(f"fused Sinkhorn needs n_iters >= 1 and logk (B, M, N) with a (B, M), b (B, N); got "
                         f"n_iters={n_iters}, {tuple(logk.shape)}, {tuple(a.shape)}, {tuple(b.shape)}")
    if not (logk.dtype in SUFFIX and a.dtype == b.dtype == logk.dtype):
        raise ValueError(f"fused Sinkhorn needs float32 or float64 inputs of one dtype, got {logk.dtype}, "
                         f"{a.dtype}, {b.dtype}")
    if {t.device.type for t in (logk, a, b)} != {"cpu"}:
        raise ValueError("fused Sinkhorn runs on CPU tensors only")


class FusedScalingSinkhorn(torch.autograd.Function):
    """Compiled scaling-domain Sinkhorn: (logk (B, M, N), a (B, M), b (B, N)) -> plan (B, M, N)."""

    @staticmethod
    def forward(ctx, logk: Tensor, a: Tensor, b: Tensor, n_iters: int, grad_steps: int) -> Tensor:
        _check(logk, a, b, n_iters)
        kern = (logk - logk.amax(dim=(1, 2), keepdim=True)).exp_().contiguous()  # (B, M, N), in (0, 1]
        a, b = a.contiguous(), b.contiguous()
        batch, m, n = kern.shape
        alphas = kern.new_empty(batch, n_iters + 1, m)
        betas, den_vs = kern.new_empty(batch, n_iters, n), kern.new_empty(batch, n_iters, n)
        den_us = kern.new_empty(batch, n_iters, m)
        plan = torch.empty_like(kern)  # (B, M, N)
        _call("forward", [batch, m, n, n_iters], [kern, a, b, alphas, betas, den_us, den_vs, plan])
        ctx.save_for_backward(kern, plan, a, b, alphas, betas, den_us, den_vs)
        ctx.grad_steps = grad_steps
        return plan

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_plan: Tensor):
        kern, plan, a, b, alphas, betas, den_us, den_vs = ctx.saved_tensors
        batch, m, n = kern.shape
        grad_plan = grad_plan.to(kern.dtype).contiguous()  # (B, M, N)
        g_logk, g_a, g_b = torch.empty_like(kern), torch.empty_like(a), torch.empty_like(b)
        _call("backward", [batch, m, n, betas.shape[1], ctx.grad_steps],
              [grad_plan, kern, plan, alphas, betas, den_us, den_vs, g_logk, g_a, g_b])
        return input_grads(ctx, g_logk, g_a, g_b, a, b)
