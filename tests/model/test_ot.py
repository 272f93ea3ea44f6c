"""Tests for hcm.model.ot: agreement with POT, marginals, gradients, padding, auto choice, KeOps fallback."""

from __future__ import annotations

import os
import warnings

import ot
import pytest
import torch

from hcm.model import ot as hot
from hcm.model.ot import PointCloudCost, choose_backend, keops_backend, sinkhorn, sinkhorn_transport
from hcm.model.ot.dense import LogSinkhorn, ScalingSinkhorn, scaling_is_safe
from hcm.model.ot.problem import SquaredDistances

F64 = torch.float64
HAS_COMPILER = keops_backend.compiler_problem() is None


@pytest.fixture(scope="session")
def keops_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One KeOps build folder for the whole session, kept across runs in pytest's cache
    (or in a temporary folder when the cache plugin is off)."""
    cache = getattr(request.config, "cache", None)
    folder = str(cache.mkdir("hcm-keops") if cache else tmp_path_factory.mktemp("hcm-keops"))
    previous = os.environ.get("KEOPS_CACHE_FOLDER")
    os.environ["KEOPS_CACHE_FOLDER"] = folder
    yield folder
    if previous is None:
        os.environ.pop("KEOPS_CACHE_FOLDER", None)
    else:
        os.environ["KEOPS_CACHE_FOLDER"] = previous


def pot_reference(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iters: int) -> torch.Tensor:
    """POT's sinkhorn_log per sample on the support of the marginals, (B, M, N)."""
    plans = torch.zeros_like(cost)
    for k in range(cost.shape[0]):
        rows, cols = a[k] > 0, b[k] > 0
        sub = ot.bregman.sinkhorn_log(a[k][rows], b[k][cols], cost[k][rows][:, cols], eps,
                                      numItermax=n_iters, stopThr=-1.0, warn=False)
        plans[k][rows.nonzero(), cols.nonzero().T] = sub
    return plans


def clouds(batch: int, m: int, n: int, d: int = 3, seed: int = 0, structured: bool = False):
    """Random points, or sorted 1-D grids (a banded, highly structured cost)."""
    gen = torch.Generator().manual_seed(seed)
    if structured:
        x = torch.linspace(0, 1, m, dtype=F64)[None, :, None].expand(batch, m, d).clone()
        y = torch.linspace(0, 1, n, dtype=F64)[None, :, None].expand(batch, n, d).clone() + 0.1
        return x, y
    return torch.rand(batch, m, d, generator=gen, dtype=F64), torch.rand(batch, n, d, generator=gen, dtype=F64)


def marginals(batch: int, m: int, n: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, m, generator=gen, dtype=F64) + 0.1
    b = torch.rand(batch, n, generator=gen, dtype=F64) + 0.1
    return a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)


DENSE_CASES = [  # (B, M, N, eps, structured)
    (2, 4, 6, 0.05, False),
    (3, 30, 20, 0.1, False),
    (2, 64, 64, 0.02, True),
    (1, 100, 80, 0.005, False),  # spread/eps > the float64 scaling limit: log path
]


@pytest.mark.parametrize("backend", ["torch", "pot"])
@pytest.mark.parametrize("batch,m,n,eps,structured", DENSE_CASES)
def test_dense_backends_match_pot(backend, batch, m, n, eps, structured):
    x, y = clouds(batch, m, n, structured=structured)
    cost = PointCloudCost(x, y, 2).dense()
    a, b = marginals(batch, m, n)
    plan = sinkhorn(cost, a, b, eps=eps, n_iters=30, backend=backend)
    torch.testing.assert_close(plan, pot_reference(cost, a, b, eps, 30), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-6), (F64, 1e-12)])
def test_random_cost_matrix_both_paths(dtype, atol):
    cost = torch.rand(4, 12, 9, generator=torch.Generator().manual_seed(3), dtype=dtype)
    a, b = (m.to(dtype) for m in marginals(4, 12, 9))
    reference = pot_reference(cost.double(), a.double(), b.double(), 0.1, 40).to(dtype)
    logk = cost / -0.1
    assert scaling_is_safe(logk)
    for fn in (ScalingSinkhorn, LogSinkhorn):
        torch.testing.assert_close(fn.apply(logk, a, b, 40, 40), reference, rtol=1e-4, atol=atol)


def test_marginals_after_convergence():
    x, y = clouds(3, 25, 40, seed=4)
    a, b = marginals(3, 25, 40)
    for eps in (0.5, 0.05):
        plan = sinkhorn(PointCloudCost(x, y), a, b, eps=eps, n_iters=500, backend="torch")
        torch.testing.assert_close(plan.sum(2), a, atol=1e-8, rtol=0)  # exact after the last u update
        torch.testing.assert_close(plan.sum(1), b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("spread", ["scaling", "log"])
def test_float64_gradcheck(spread):
    eps = 0.5 if spread == "scaling" else 0.001  # 0.001 -> spread/eps > 200: log path
    gen = torch.Generator().manual_seed(5)
    cost = torch.rand(2, 3, 4, generator=gen, dtype=F64).requires_grad_()
    a, b = marginals(2, 3, 4)
    a.requires_grad_(), b.requires_grad_()
    assert scaling_is_safe(cost.detach() / -eps) == (spread == "scaling")
    weights = torch.rand(2, 3, 4, generator=gen, dtype=F64)
    fn = lambda c, a_, b_: (sinkhorn(c, a_, b_, eps=eps, n_iters=7, backend="torch") * weights).sum()
    assert torch.autograd.gradcheck(fn, (cost, a, b))


def test_unrolled_gradient_matches_pot_autograd():
    x, y = clouds(2, 6, 5, seed=6)
    x.requires_grad_()
    grads = {}
    for backend in ("torch", "pot"):
        x.grad = None
        sinkhorn_transport(x, y, x, eps=0.1, n_iters=15, backend=backend).square().sum().backward()
        grads[backend] = x.grad.clone()
    torch.testing.assert_close(grads["torch"], grads["pot"], rtol=1e-8, atol=1e-10)


def test_last_step_gradient_is_opt_in_and_biased():
    x, y = clouds(2, 8, 8, seed=7)
    x.requires_grad_()
    grads = {}
    for grad in ("unrolled", "last_step"):
        x.grad = None
        sinkhorn_transport(x, y, x, eps=0.1, n_iters=100, grad=grad, backend="torch").square().sum().backward()
        grads[grad] = x.grad.clone()
    assert torch.isfinite(grads["last_step"]).all()
    bias = (grads["unrolled"] - grads["last_step"]).norm() / grads["unrolled"].norm()
    assert 0.01 < bias < 1.5  # biased, as docs/ot.md warns, but the same order of magnitude


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_tiny_eps_gives_no_nan(dtype):
    x, y = (t.to(dtype) for t in clouds(2, 20, 15, seed=8))
    x.requires_grad_()
    plan = sinkhorn(PointCloudCost(x, y, 1), eps=1e-4, n_iters=50, backend="torch")
    assert torch.isfinite(plan).all()
    (plan * torch.rand_like(plan)).sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(plan.sum(2), torch.full((2, 20), 1 / 20, dtype=dtype))


@pytest.mark.parametrize("backend", ["torch", "pot"])
def test_padded_marginals(backend):
    x, y = clouds(3, 6, 5, seed=9)
    x.requires_grad_(), y.requires_grad_()
    mask_a = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6, [0] * 6], dtype=torch.bool)
    mask_b = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1] * 5], dtype=torch.bool)
    a = mask_a / mask_a.sum(1, keepdim=True).clamp_min(1)
    b = mask_b / mask_b.sum(1, keepdim=True)
    cost = PointCloudCost(x, y, 1)
    plan = sinkhorn(cost, a.double(), b.double(), eps=0.05, n_iters=30, backend=backend)
    assert torch.isfinite(plan).all()
    assert (plan[~mask_a] == 0).all() and (plan.transpose(1, 2)[~mask_b] == 0).all()
    assert (plan[2] == 0).all()  # a sample with an empty modality
    ref = pot_reference(cost.dense().detach()[:2], a[:2].double(), b[:2].double(), 0.05, 30)
    torch.testing.assert_close(plan[:2].detach(), ref, rtol=1e-7, atol=1e-12)
    (plan * torch.rand_like(plan)).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_choose_backend_by_device_and_size():
    assert choose_backend("cpu", 50, 50) == "torch"
    assert choose_backend("cpu", 10000, 10000) == "torch"  # KeOps never wins on CPU (docs/ot.md)
    h100 = 80 * 1024**3
    assert choose_backend("cuda", 50, 50, batch=64, device_bytes=h100) == "torch"
    assert choose_backend("cuda", 16384, 16384, device_bytes=h100) == "torch"  # measured: dense torch is fine
    assert choose_backend("cuda", 16384, 16384, device_bytes=16 * 1024**3) == "keops"  # 16 GiB over half of it
    assert choose_backend("cuda", 1000, 1000, batch=1024, device_bytes=h100) == "keops"  # 64 GiB dense
    assert choose_backend("cuda", 10000, 10000, point_cloud=False) == "torch"


def test_auto_and_registry():
    assert {"torch", "keops", "pot"} <= set(hot.BACKENDS)
    cost = torch.rand(2, 5, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sinkhorn(cost, eps=0.1, n_iters=5), sinkhorn(cost, eps=0.1, n_iters=5, backend="torch"))
    with pytest.raises(ValueError, match="unknown OT backend 'nope'"):
        sinkhorn(cost, eps=0.1, n_iters=5, backend="nope")
    with pytest.raises(ValueError, match="already registered"):
        hot.register_backend("torch")(type("Dup", (hot.registry.SinkhornBackend,), {}))


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": 0.0, "n_iters": 5}, "eps must be"),
    ({"eps": 0.1, "n_iters": 0}, "n_iters must be"),
    ({"eps": 0.1, "n_iters": 5, "grad": "implicit"}, "grad must be"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sinkhorn(torch.rand(1, 3, 3), **kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="inf or NaN"):
        sinkhorn(torch.tensor([[[0.0, float("inf")]]]), eps=0.1, n_iters=3)
    points = torch.rand(2, 4, 3)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = points.clone()
        broken[1, 2, 0] = bad
        with pytest.raises(ValueError, match="inf or NaN"):
            sinkhorn_transport(broken, points, points, eps=0.1, n_iters=3)
        with pytest.raises(ValueError, match="inf or NaN"):
            sinkhorn(PointCloudCost(points, broken), eps=0.1, n_iters=3)
    with pytest.raises(ValueError, match=r"marginal a must have shape \(1, 3\)"):
        sinkhorn(torch.rand(1, 3, 3), torch.rand(1, 4), eps=0.1, n_iters=3)
    with pytest.raises(ValueError, match="needs the cost as point clouds"):
        sinkhorn(torch.rand(1, 3, 3), eps=0.1, n_iters=3, backend="keops")


def test_keops_fallback_without_compiler(monkeypatch):
    monkeypatch.setattr(keops_backend, "compiler_problem", lambda: "no C++ compiler 'g++' on PATH")
    x, y = clouds(2, 5, 4, seed=10)
    with pytest.warns(RuntimeWarning, match="KeOps unavailable .*no C\\+\\+ compiler.*using the torch backend"):
        moved = sinkhorn_transport(x, y, x, eps=0.1, n_iters=10, backend="keops")
    torch.testing.assert_close(moved, sinkhorn_transport(x, y, x, eps=0.1, n_iters=10, backend="torch"))


def test_keops_fallback_when_compile_fails(monkeypatch):
    def broken():
        raise RuntimeError("[KeOps] Error: compilation of formula failed\nlong log ...")

    monkeypatch.setattr(keops_backend, "load_pykeops", broken)
    monkeypatch.setattr(keops_backend, "compiler_problem", lambda: None)
    x, y = clouds(1, 4, 4, seed=11)
    with pytest.warns(RuntimeWarning, match=r"compilation of formula failed\); using the torch backend"):
        plan = sinkhorn(PointCloudCost(x, y), eps=0.1, n_iters=10, backend="keops")
    torch.testing.assert_close(plan, sinkhorn(PointCloudCost(x, y), eps=0.1, n_iters=10, backend="torch"))


@pytest.mark.slow
def test_keops_backend(keops_cache):
    """Agreement with POT (random + structured, padded), transport and a float64 gradcheck, d=3 only."""
    if not HAS_COMPILER:  # no silent skip: then the backend must fall back with its warning
        with pytest.warns(RuntimeWarning, match="KeOps unavailable"):
            sinkhorn(PointCloudCost(*clouds(1, 4, 4)), eps=0.1, n_iters=3, backend="keops")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback here would be a failure
        for structured, (m, n) in ((False, (9, 7)), (True, (16, 16))):
            x, y = clouds(2, m, n, seed=12, structured=structured)
            a, b = marginals(2, m, n)
            a[0, -2:] = 0
            a = a / a.sum(1, keepdim=True)
            plan = sinkhorn(PointCloudCost(x, y), a, b, eps=0.05, n_iters=20, backend="keops")
            torch.testing.assert_close(plan, pot_reference(PointCloudCost(x, y).dense(), a, b, 0.05, 20),
                                       rtol=1e-7, atol=1e-12)
        x, y = clouds(1, 3, 4, seed=13)
        x.requires_grad_()
        fn = lambda x_: sinkhorn_transport(x_, y, x_, eps=0.2, n_iters=5, backend="keops").square().sum()
        assert torch.autograd.gradcheck(fn, (x,))
        torch.testing.assert_close(
            sinkhorn_transport(x, y, x, eps=0.2, n_iters=5, backend="keops"),
            sinkhorn_transport(x, y, x, eps=0.2, n_iters=5, backend="torch"),
        )


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_sinkhorn_is_a_float32_island_under_autocast(low: torch.dtype) -> None:
    """Under CPU autocast, and with low-precision inputs, the plan matches the float32 plan."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 7, 16, generator=gen)
    y = torch.randn(3, 5, 16, generator=gen)
    reference = sinkhorn(PointCloudCost(x, y, p=1), eps=0.1, n_iters=30)
    xl, yl = x.to(low).requires_grad_(), y.to(low).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plan = sinkhorn(PointCloudCost(xl, yl, p=1), eps=0.1, n_iters=30)
        moved = sinkhorn_transport(xl, yl, xl, eps=0.1, n_iters=30, p=1)
    assert plan.dtype == torch.float32 and moved.dtype == torch.float32
    # only the inputs' rounding to `low` differs from the float32 run (relative 2^-8 for bf16)
    torch.testing.assert_close(plan, reference, rtol=0.05, atol=2e-3)
    (plan.square().sum() + moved.square().sum()).backward()
    assert torch.isfinite(xl.grad).all() and torch.isfinite(yl.grad).all()


@pytest.mark.parametrize("script, expected", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "killed by signal 11"),
    ("import sys; sys.exit('nvrtc: cannot load libnvrtc.so')", "exit status 1: nvrtc: cannot load libnvrtc.so"),
    ("import hcm.model.ot.keops_backend", None),  # the child imports the same hcm
])
def test_keops_gpu_probe_reports_a_crashing_build(monkeypatch: pytest.MonkeyPatch, script: str,
                                                  expected: str | None) -> None:
    monkeypatch.setattr(keops_backend, "GPU_PROBE", script)
    keops_backend.gpu_problem.cache_clear()
    problem = keops_backend.gpu_problem()
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem
    monkeypatch.setattr(keops_backend, "GPU_PROBE", "raise SystemExit(3)")
    assert keops_backend.gpu_problem() == problem  # asked once per process
    keops_backend.gpu_problem.cache_clear()


def test_keops_on_cuda_is_refused_when_the_probe_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keops_backend, "gpu_problem", lambda: "its GPU build failed in a test process (signal 11)")
    with pytest.raises(RuntimeError, match="signal 11"):
        keops_backend.KeopsBackend._lazy(torch.device("cuda"))
    monkeypatch.setattr(keops_backend, "compiler_problem", lambda: None)
    monkeypatch.setattr(keops_backend, "load_pykeops", lambda: "lazy")
    assert keops_backend.KeopsBackend._lazy(torch.device("cpu")) == "lazy"  # the CPU needs no probe


def test_squared_distances_and_their_derivatives():
    """The written-out backward of the point-cloud cost matches autograd's, to second order."""
    gen = torch.Generator().manual_seed(14)
    x = torch.rand(2, 3, 4, generator=gen, dtype=F64).requires_grad_()
    y = torch.rand(2, 5, 4, generator=gen, dtype=F64).requires_grad_()
    direct = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)  # (B, M, N)
    torch.testing.assert_close(SquaredDistances.apply(x, y), direct)
    assert torch.autograd.gradcheck(SquaredDistances.apply, (x, y))
    assert torch.autograd.gradgradcheck(SquaredDistances.apply, (x, y))
    torch.testing.assert_close(PointCloudCost(x, y, 2).dense(), direct)
