"""The ``keops`` backend: lazy KeOps reductions on point clouds (Eq. 11-12 without dense arrays).

The cost ``|x_i - y_j|^p`` is a KeOps formula, so the Sinkhorn log-sum-exp updates and the
transported features ``H^T G`` are reductions that never hold a (B, M, N) array; only
:meth:`KeopsBackend.plan` materialises the plan, because it is the requested output.

KeOps compiles each new formula with a C++ compiler on first use (about 5 s per formula on a
2-core CPU) and caches the binary under ``$KEOPS_CACHE_FOLDER``, by default
``~/.cache/hcm/keops``. When no compiler is found or compilation fails, the call falls back to
the ``torch`` backend with a one-line warning.

On CUDA, pykeops builds GPU code through NVRTC, and that build can crash the whole process
(a segmentation fault in pykeops 2.3's NVRTC code generation on an H100 with CUDA 13 and driver
580). Before the first GPU reduction of a process, hcm therefore builds and runs one small
reduction in a child process (:func:`gpu_problem`); if the child fails, KeOps is not used on the
GPU and the torch backend runs instead, with the same one-line warning naming the cause.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor

from hcm.model.ot.dense import TorchBackend
from hcm.model.ot.problem import PointCloudCost, SinkhornProblem, safe_log
from hcm.model.ot.registry import SinkhornBackend, register_backend

DEFAULT_CACHE = Path("~/.cache/hcm/keops")


def keops_cache_folder() -> Path:
    """Where KeOps keeps compiled formulas: ``$KEOPS_CACHE_FOLDER`` or ``~/.cache/hcm/keops``."""
    return Path(os.environ.get("KEOPS_CACHE_FOLDER") or DEFAULT_CACHE).expanduser()


def compiler_problem() -> str | None:
    """Why KeOps cannot compile here (no C++ compiler), or None when a compiler is found."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler {compiler!r} on PATH (install g++ or set CXX)"
    return None


GPU_PROBE = """
import torch
from hcm.model.ot.keops_backend import load_pykeops
lazy = load_pykeops()
x, y = torch.rand(2, 5, 3, device="cuda"), torch.rand(2, 4, 3, device="cuda")
out = (lazy(x[:, :, None, :]).sqdist(lazy(y[:, None, :, :])) * -1.0).logsumexp(dim=1)
torch.cuda.synchronize()
assert tuple(out.shape) == (2, 4, 1), out.shape
"""
PROBE_TIMEOUT_S = 600  # a first NVRTC build of a formula takes seconds to a minute


def _run_probe() -> str | None:
    env = {**os.environ, "KEOPS_CACHE_FOLDER": str(keops_cache_folder()),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the child imports this hcm
    try:
        done = subprocess.run([sys.executable, "-c", GPU_PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return f"its GPU build did not finish within {PROBE_TIMEOUT_S} s in a test process"
    if done.returncode == 0:
        return None
    how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
    said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("[KeOps]")]
    return f"its GPU build failed in a test process ({how}{': ' + said[-1][:150] if said else ''})"


@functools.cache
def gpu_problem() -> str | None:
    """Why KeOps cannot run on CUDA in this environment, or None; asked once per process by
    building and running one small GPU reduction in a child process (see the module docstring)."""
    return _run_probe()


def load_pykeops():
    """Import ``pykeops.torch.LazyTensor`` with its build folder inside :func:`keops_cache_folder`."""
    folder = keops_cache_folder()
    os.environ.setdefault("KEOPS_CACHE_FOLDER", str(folder))  # read by keopscore at import
    import pykeops
    from pykeops.torch import LazyTensor

    build = Path(pykeops.get_build_folder())
    if folder.resolve() not in build.resolve().parents:  # pykeops was imported before us
        pykeops.set_build_folder(str(folder / build.name))
    return LazyTensor


def _lazy_cost(cost: PointCloudCost, lazy):
    """KeOps formula for the cost: i over source points, j over target points (B, M, N)."""
    x_i = lazy(cost.x[:, :, None, :])  # (B, M, 1, d)
    y_j = lazy(cost.y[:, None, :, :])  # (B, 1, N, d)
    sq = x_i.sqdist(y_j)
    if cost.p == 2:
        return sq
    tiny = torch.finfo(cost.x.dtype).tiny
    return sq.clamp(tiny, torch.finfo(cost.x.dtype).max).sqrt()


def _potentials(problem: SinkhornProblem, lazy) -> tuple[Tensor, Tensor]:
    """Log potentials u (B, M), v (B, N) after ``n_iters`` lazy log-domain iterations."""
    cost = problem.cost
    inv_eps = cost.x.new_full((cost.x.shape[0], 1, 1, 1), -1.0 / problem.eps)  # a parameter, not a constant
    logk = _lazy_cost(cost, lazy) * lazy(inv_eps)  # -C / eps, lazy (B, M, N)
    loga, logb = safe_log(problem.a), safe_log(problem.b)
    u = safe_log((problem.a > 0).to(problem.a.dtype))  # (B, M); -inf on zero-mass rows
    exact_from = 0 if problem.grad == "unrolled" else problem.n_iters - 1
    for step in range(problem.n_iters):
        with torch.set_grad_enabled(torch.is_grad_enabled() and step >= exact_from):
            v = logb - (logk + lazy(u[:, :, None, None])).logsumexp(dim=1).squeeze(-1)  # (B, N)
            u = loga - (logk + lazy(v[:, None, :, None])).logsumexp(dim=2).squeeze(-1)  # (B, M)
    return u, v


def _fallback(error: str) -> TorchBackend:
    warnings.warn(f"KeOps unavailable ({error}); using the torch backend instead", RuntimeWarning, stacklevel=4)
    return TorchBackend()


@register_backend("keops")
class KeopsBackend(SinkhornBackend):
    """KeOps lazy reductions; needs the cost as a :class:`PointCloudCost`."""

    def _check(self, problem: SinkhornProblem) -> None:
        if not isinstance(problem.cost, PointCloudCost):
            raise ValueError(
                "the keops backend needs the cost as point clouds (PointCloudCost(x, y, p)); "
                "a dense (B, M, N) cost is already materialised, use backend='torch' for it"
            )

    def plan(self, problem: SinkhornProblem) -> Tensor:
        self._check(problem)
        try:
            u, v = _potentials(problem, self._lazy(problem.a.device))
        except Exception as error:  # noqa: BLE001 - any compile/load failure means: fall back
            return _fallback(_describe(error)).plan(problem)
        logk = problem.cost.dense() / -problem.eps  # (B, M, N): the plan is the output
        return (logk + u[:, :, None] + v[:, None, :]).exp()

    def transport(self, problem: SinkhornProblem, values: Tensor) -> Tensor:
        self._check(problem)
        try:
            lazy = self._lazy(problem.a.device)
            u, v = _potentials(problem, lazy)
            logk = _lazy_cost(problem.cost, lazy) * lazy(
                problem.cost.x.new_full((values.shape[0], 1, 1, 1), -1.0 / problem.eps)
            )
            log_plan = logk + lazy(u[:, :, None, None]) + lazy(v[:, None, :, None])
            return (log_plan.exp() * lazy(values[:, :, None, :])).sum(dim=1)  # (B, N, d_v)
        except Exception as error:  # noqa: BLE001
            return _fallback(_describe(error)).transport(problem, values)

    @staticmethod
    def _lazy(device: torch.device):
        problem = compiler_problem() or (gpu_problem() if device.type == "cuda" else None)
        if problem is not None:
            raise RuntimeError(problem)
        return load_pykeops()


def _describe(error: Exception) -> str:
    """The first line of an error, short enough for a one-line warning."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]
