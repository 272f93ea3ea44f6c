"""Tests for the fused CPU Sinkhorn (hcm.model.ot.fused_cpu) and its build machinery (hcm.model.ot.native):
agreement with the torch scaling path, gradients, the fallback when the compiler fails, the switch,
and concurrent builds into one cache folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hcm.model.ot import fused_cpu, native, sinkhorn
from hcm.model.ot.dense import LogSinkhorn, ScalingSinkhorn, dense_plan
from hcm.model.ot.fused_cpu import FusedScalingSinkhorn

F64 = torch.float64
HAS_COMPILER = shutil.which(native.compiler_command()[0]) is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason=f"no C++ compiler {native.compiler_command()[0]!r}")


@pytest.fixture(autouse=True)
def two_threads(monkeypatch: pytest.MonkeyPatch):
    """Two threads, and the batch split over them even for these small problems."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(fused_cpu, "THREAD_GRAIN", 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty kernel cache and no library loaded yet; the process's library is reloaded afterwards."""
    monkeypatch.setenv("HCM_KERNEL_CACHE", str(tmp_path / "kernels"))
    fused_cpu.kernels.cache_clear()
    yield tmp_path / "kernels"
    fused_cpu.kernels.cache_clear()


def problem(batch: int, m: int, n: int, dtype: torch.dtype, seed: int = 0, eps: float = 0.1):
    """logk (B, M, N) of a random cost, and marginals with a few zero-mass (padded) nodes."""
    gen = torch.Generator().manual_seed(seed)
    logk = torch.rand(batch, m, n, generator=gen, dtype=F64) / -eps
    a = torch.rand(batch, m, generator=gen, dtype=F64) + 0.1
    b = torch.rand(batch, n, generator=gen, dtype=F64) + 0.1
    a[0, -2:] = 0  # padded source nodes
    b[-1, :3] = 0  # padded target nodes
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    return logk.to(dtype), a.to(dtype), b.to(dtype)


def plan_and_grads(solver, logk, a, b, n_iters: int, grad_steps: int):
    """The plan and d(sum(plan * w))/d(logk, a, b) for fixed random weights w."""
    inputs = [t.clone().requires_grad_() for t in (logk, a, b)]
    plan = solver.apply(*inputs, n_iters, grad_steps)
    weights = torch.rand(plan.shape, generator=torch.Generator().manual_seed(9), dtype=plan.dtype)
    grads = torch.autograd.grad((plan * weights).sum(), inputs)
    return [plan.detach(), *grads]


def assert_near(actual, expected, dtype):
    """float64: agreement to ~1e-10; float32: ~1e-5 of each tensor's largest entry."""
    rel = 1e-10 if dtype == F64 else 1e-5
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want, rtol=rel, atol=rel * float(want.abs().max()))


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("batch,m,n,n_iters,grad_steps", [
    (5, 9, 9, 40, 40),  # square, padded rows and columns
    (4, 12, 7, 30, 30),  # M > N
    (3, 6, 11, 25, 1),  # M < N, grad="last_step"
    (1, 8, 10, 20, 20),  # B = 1
    (3, 50, 50, 50, 50),  # the benchmark's node counts, more samples than threads
])
def test_fused_matches_torch_scaling_path(dtype, batch, m, n, n_iters, grad_steps):
    logk, a, b = problem(batch, m, n, dtype)
    fused = plan_and_grads(FusedScalingSinkhorn, logk, a, b, n_iters, grad_steps)
    reference = plan_and_grads(ScalingSinkhorn, logk, a, b, n_iters, grad_steps)
    assert_near(fused, reference, dtype)
    assert (fused[0][0, -2:] == 0).all() and (fused[0][-1, :, :3] == 0).all()  # padded nodes: exact zeros
    assert (fused[2][0, -2:] == 0).all() and (fused[3][-1, :3] == 0).all()  # and zero marginal gradients


@needs_compiler
def test_fused_result_does_not_depend_on_threads(restore_threads):
    logk, a, b = problem(7, 10, 13, F64, seed=2)
    two = plan_and_grads(FusedScalingSinkhorn, logk, a, b, 15, 15)
    torch.set_num_threads(1)
    one = plan_and_grads(FusedScalingSinkhorn, logk, a, b, 15, 15)
    for got, want in zip(one, two):
        assert torch.equal(got, want)  # each sample runs on one thread, in the same order


@needs_compiler
def test_fused_gradcheck_float64():
    logk, a, b = problem(2, 3, 4, F64, seed=3, eps=0.5)
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(2, 3, dtype=F64, generator=gen) + 0.2  # no zero mass: all directions
    b = torch.rand(2, 4, dtype=F64, generator=gen) + 0.2
    weights = torch.rand(2, 3, 4, dtype=F64, generator=gen)
    inputs = tuple(t.requires_grad_() for t in (logk, a, b))
    assert torch.autograd.gradcheck(lambda *x: (FusedScalingSinkhorn.apply(*x, 7, 7) * weights).sum(), inputs)
    plan = FusedScalingSinkhorn.apply(*inputs, 7, 7)
    (g_logk,) = torch.autograd.grad(plan.square().sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):  # no silently wrong second derivative
        g_logk.sum().backward()


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dense_plan_uses_the_fused_path_on_cpu(dtype, monkeypatch):
    logk, a, b = problem(3, 6, 5, dtype)
    logk.requires_grad_()
    plan = dense_plan(logk, a, b, 20, "unrolled")
    assert type(plan.grad_fn).__name__ == "FusedScalingSinkhornBackward"
    monkeypatch.setenv(fused_cpu.SWITCH, "0")  # the documented switch
    off = dense_plan(logk, a, b, 20, "unrolled")
    assert type(off.grad_fn).__name__ == "ScalingSinkhornBackward"
    assert_near([plan.detach()], [off.detach()], dtype)
    unsafe = dense_plan(logk * 100, a, b, 20, "unrolled")  # spread beyond the scaling limit
    assert type(unsafe.grad_fn).__name__ == "LogSinkhornBackward"


@needs_compiler
def test_empty_marginal_sample_as_before(monkeypatch):
    """An all-zero marginal: sinkhorn() gives that sample a zero plan, and dense_plan() on its own
    sees the fused plan's NaN and reruns the log path, as the torch scaling path does."""
    logk, a, b = problem(3, 5, 4, F64)
    a[1] = 0
    cost = (logk * -0.1).requires_grad_()
    plan = sinkhorn(cost, a, b, eps=0.1, n_iters=20)
    assert (plan[1] == 0).all() and torch.isfinite(plan).all()
    (grad,) = torch.autograd.grad((plan * plan).sum(), cost)
    monkeypatch.setenv(fused_cpu.SWITCH, "0")
    cost_off = cost.detach().clone().requires_grad_()
    plan_off = sinkhorn(cost_off, a, b, eps=0.1, n_iters=20)
    (grad_off,) = torch.autograd.grad((plan_off * plan_off).sum(), cost_off)
    assert_near([plan.detach(), grad], [plan_off.detach(), grad_off], F64)
    monkeypatch.delenv(fused_cpu.SWITCH)
    direct = dense_plan(logk, a, b, 20, "unrolled")
    assert not torch.isfinite(FusedScalingSinkhorn.apply(logk, a, b, 20, 20)).all()
    torch.testing.assert_close(direct, LogSinkhorn.apply(logk, a, b, 20, 20), rtol=0, atol=0, equal_nan=True)


def failing_compiler(folder: Path, body: str) -> str:
    """A stand-in compiler script; ``body`` runs with the output path in $out."""
    script = folder / "broken-c++"
    script.write_text("#!/bin/sh\nfor arg; do out=$arg; done\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def test_fallback_when_the_compiler_fails(fresh_build, tmp_path, monkeypatch):
    """A compiler that writes half a library and fails: one warning, the torch path, nothing left behind."""
    monkeypatch.setenv("CXX", failing_compiler(tmp_path, """
        printf 'half a library' > "$out"
        echo "sinkhorn_cpu.cpp:1:1: error: something is wrong" >&2
        exit 1
    """))
    logk, a, b = problem(2, 4, 5, F64)
    logk.requires_grad_()
    with pytest.warns(RuntimeWarning, match=r"fused CPU Sinkhorn unavailable .*failed \(exit 1\): "
                                            r"sinkhorn_cpu.cpp:1:1: error: something is wrong"):
        plan = dense_plan(logk, a, b, 10, "unrolled")
    assert type(plan.grad_fn).__name__ == "ScalingSinkhornBackward"
    assert not fused_cpu.use_fused(logk, a, b)  # decided once per process: no second warning, no rebuild
    with pytest.raises(RuntimeError, match="fused CPU Sinkhorn kernel is unavailable"):
        FusedScalingSinkhorn.apply(logk, a, b, 10, 10)
    assert list(fresh_build.iterdir()) == []  # neither the half-written output nor a library


def test_fallback_without_a_compiler(fresh_build, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    logk, a, b = problem(2, 4, 5, torch.float32)
    with pytest.warns(RuntimeWarning, match="cannot run the C\\+\\+ compiler '/nonexistent/c\\+\\+'"):
        plan = dense_plan(logk, a, b, 10, "unrolled")
    torch.testing.assert_close(plan, ScalingSinkhorn.apply(logk, a, b, 10, 10))


def test_fallback_when_the_cached_library_is_broken(fresh_build):
    target = native.library_path(fused_cpu.SOURCE, native.compiler_command())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")
    logk, a, b = problem(2, 4, 5, F64)
    with pytest.warns(RuntimeWarning, match=re.escape(f"fused CPU Sinkhorn unavailable (cannot load {target}")):
        assert not fused_cpu.use_fused(logk, a, b)


def test_switch_skips_the_build(fresh_build, monkeypatch):
    monkeypatch.setenv(fused_cpu.SWITCH, "off")
    logk, a, b = problem(2, 4, 5, torch.float32)
    assert not fused_cpu.use_fused(logk, a, b)
    assert fused_cpu.kernels.cache_info().currsize == 0 and not fresh_build.exists()


def test_library_name_follows_source_compiler_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("HCM_KERNEL_CACHE", str(tmp_path))
    source = tmp_path / "k.cpp"
    source.write_text("int f() { return 1; }\n")
    first = native.library_path(source, ["c++"])
    assert first.parent == tmp_path and first.name.startswith("k-") and first.suffix == ".so"
    assert native.library_path(source, ["c++"]) == first
    assert native.library_path(source, ["g++"]) != first
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DX"))
    assert native.library_path(source, ["c++"]) != first
    source.write_text("int f() { return 2; }\n")
    monkeypatch.setattr(native, "FLAGS", native.FLAGS[:-1])
    assert native.library_path(source, ["c++"]) != first


BUILD_AND_RUN = """
import sys, torch
from hcm.model.ot import fused_cpu
assert fused_cpu.kernels() is not None
logk = -torch.rand(2, 3, 4, dtype=torch.float64) * 5
plan = fused_cpu.FusedScalingSinkhorn.apply(logk, torch.full((2, 3), 1 / 3, dtype=torch.float64),
                                            torch.full((2, 4), 0.25, dtype=torch.float64), 50, 50)
assert torch.allclose(plan.sum(1), torch.full((2, 4), 0.25, dtype=torch.float64), atol=1e-6), plan.sum(1)
"""


@needs_compiler
def test_two_processes_build_at_once(tmp_path):
    """Both compile into one empty cache at the same time (the compiler is slowed down so that they
    overlap); both load a complete library and only the finished library stays in the folder."""
    slow = tmp_path / "slow-c++"
    slow.write_text(f"#!/bin/sh\nsleep 1\nexec {native.compiler_command()[0]} \"$@\"\n")
    slow.chmod(0o755)
    cache = tmp_path / "kernels"
    env = {**os.environ, "HCM_KERNEL_CACHE": str(cache), "CXX": str(slow), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_AND_RUN], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [proc.communicate(timeout=240)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert [path.suffix for path in cache.iterdir()] == [".so"]


@needs_compiler
def test_one_large_sample_keeps_the_threaded_torch_path(restore_threads):
    """Fewer samples than threads: the fused path (one thread per sample) only for small samples."""
    big = fused_cpu.SERIAL_MAX_PAIRS + 1

    def shapes(batch: int, m: int, n: int):
        return torch.zeros(batch, m, n), torch.full((batch, m), 1 / m), torch.full((batch, n), 1 / n)

    assert not fused_cpu.use_fused(*shapes(1, 1, big))
    assert fused_cpu.use_fused(*shapes(2, 1, big))  # one sample per thread
    assert fused_cpu.use_fused(*shapes(1, 50, 50))
    torch.set_num_threads(1)
    assert fused_cpu.use_fused(*shapes(1, 1, big))


def test_threads_follow_the_work(monkeypatch):
    monkeypatch.setattr(fused_cpu, "THREAD_GRAIN", 1 << 20)
    assert fused_cpu.threads_for(64, 50, 50, 50) == 2  # the benchmark's problem: torch's thread count
    assert fused_cpu.threads_for(8, 20, 20, 50) == 1  # tiny: no second thread to wake
    assert fused_cpu.threads_for(1, 1000, 1000, 50) == 1  # one thread per sample at most


@needs_compiler
def test_sizes_are_checked_before_the_kernel_runs():
    logk, a, b = problem(2, 4, 5, F64)
    with pytest.raises(ValueError, match="n_iters >= 1"):
        FusedScalingSinkhorn.apply(logk, a, b, 0, 0)
    with pytest.raises(ValueError, match=r"got n_iters=3, \(2, 4, 5\), \(2, 5\), \(2, 5\)"):
        FusedScalingSinkhorn.apply(logk, b, b, 3, 3)
    with pytest.raises(ValueError, match="float32 or float64 inputs of one dtype"):
        FusedScalingSinkhorn.apply(logk, a.float(), b, 3, 3)


@pytest.mark.parametrize("value,on", [(None, True), ("1", True), ("yes", True), ("", True), ("0", False),
                                      ("false", False), ("FALSE", False), (" Off ", False), ("no", False),
                                      ("NO", False)])
def test_switch_values(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(fused_cpu.SWITCH, raising=False)
    else:
        monkeypatch.setenv(fused_cpu.SWITCH, value)
    assert fused_cpu.enabled() is on


@needs_compiler
def test_a_sample_of_exactly_serial_max_pairs_takes_the_fused_path() -> None:
    """One sample on two threads: the fused path up to SERIAL_MAX_PAIRS node pairs, included."""
    m = 512
    assert m * m == fused_cpu.SERIAL_MAX_PAIRS
    logk, a, b = torch.zeros(1, m, m), torch.full((1, m), 1 / m), torch.full((1, m), 1 / m)
    assert fused_cpu.use_fused(logk, a, b)
    assert not fused_cpu.use_fused(torch.zeros(1, m, m + 1), a, torch.full((1, m + 1), 1 / (m + 1)))


def test_threads_are_a_whole_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_cpu, "THREAD_GRAIN", 2)
    threads = fused_cpu.threads_for(2, 1, 1, 3)  # 6 node-pair updates: 3 grains
    assert threads == 2 and isinstance(threads, int)
    threads = fused_cpu.threads_for(2, 1, 1, 1)  # 2 updates: one grain, one thread
    assert threads == 1 and isinstance(threads, int)
    threads = fused_cpu.threads_for(2, 1, 3, 1)  # 6 updates over 2 per grain: 3, more than the 2 threads
    assert threads == 2
    threads = fused_cpu.threads_for(3, 1, 1, 1)  # 3 updates: 1.5 grains, one thread
    assert threads == 1 and isinstance(threads, int)


def test_the_kernels_absence_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_cpu, "kernels", lambda: None)
    logk, a, b = problem(2, 4, 5, F64)
    with pytest.raises(RuntimeError, match=r"^the fused CPU Sinkhorn kernel is unavailable \(its warning says "
                                           r"why\); dense_plan\(\) uses the torch scaling path then$"):
        FusedScalingSinkhorn.apply(logk, a, b, 3, 3)


def test_a_kernel_that_fails_is_reported_as_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel returns non-zero when its per-thread vectors cannot be allocated."""
    called: list = []

    class Library:
        def hcm_sinkhorn_forward_f64(self, *args):
            called.append(args)
            return 1

    monkeypatch.setattr(fused_cpu, "kernels", lambda: Library())
    logk, a, b = problem(2, 4, 5, F64)
    with pytest.raises(MemoryError, match=r"^fused CPU Sinkhorn forward: out of memory for its per-thread work "
                                          r"vectors$"):
        FusedScalingSinkhorn.apply(logk, a, b, 3, 3)
    assert len(called) == 1 and called[0][:4] == (2, 4, 5, 3) and len(called[0]) == 4 + 8 + 1


@needs_compiler
def test_one_iteration_is_allowed() -> None:
    logk, a, b = problem(2, 4, 5, F64)
    fused = plan_and_grads(FusedScalingSinkhorn, logk, a, b, 1, 1)
    assert_near(fused, plan_and_grads(ScalingSinkhorn, logk, a, b, 1, 1), F64)


def test_tensors_off_the_cpu_are_refused() -> None:
    logk, a, b = (torch.zeros(shape, dtype=F64, device="meta") for shape in ((2, 4, 5), (2, 4), (2, 5)))
    with pytest.raises(ValueError, match="^fused Sinkhorn runs on CPU tensors only$"):
        FusedScalingSinkhorn.apply(logk, a, b, 3, 3)


@needs_compiler
@pytest.mark.parametrize("offset", [-900.0, 800.0])
def test_a_constant_added_to_one_samples_logk_changes_nothing(offset: float) -> None:
    """exp(logk) alone would under- or overflow float64 there; the plan only depends on differences
    within each sample."""
    logk, a, b = problem(3, 5, 4, F64, seed=4)
    shifted = logk.clone()
    shifted[1] += offset
    want = plan_and_grads(FusedScalingSinkhorn, logk, a, b, 7, 7)
    assert_near(plan_and_grads(FusedScalingSinkhorn, shifted, a, b, 7, 7), want, F64)
