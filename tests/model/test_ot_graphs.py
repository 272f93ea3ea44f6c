"""Tests for hcm.model.ot.cuda_graphs: the replay bookkeeping (on CPU, with a stand-in graph) and,
on a CUDA machine, graph replay against the eager loops."""

from __future__ import annotations

import logging

import pytest
import torch

from hcm.model.ot import cuda_graphs, dense, sinkhorn_transport
from hcm.model.ot.dense import LogSinkhorn, ScalingSinkhorn

CUDA = torch.cuda.is_available()


def _double_and_sum(x: torch.Tensor, y: torch.Tensor, *, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return x * scale, (x + y).sum(0)


class _StandInGraph:
    """Replays ``fn`` on the static inputs into the static outputs, as a captured graph does."""

    def __init__(self, fn, static_in, static_out, settings):
        self.fn, self.static_in, self.static_out, self.settings = fn, static_in, static_out, settings
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        for out, value in zip(self.static_out, self.fn(*self.static_in, **self.settings)):
            out.copy_(value)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> list:
    """Graph replay on the CPU: ``_eager`` says no, ``_capture`` builds a stand-in graph."""
    captured: list = []

    def capture(fn, inputs, settings):
        static_in = tuple(t.clone() for t in inputs)
        graph = _StandInGraph(fn, static_in, tuple(fn(*static_in, **settings)), settings)
        captured.append(graph)
        return graph, static_in, graph.static_out

    monkeypatch.setattr(cuda_graphs, "_eager", lambda inputs: False)
    monkeypatch.setattr(cuda_graphs, "_capture", capture)
    cuda_graphs.use_cuda_graphs(True)
    yield captured
    cuda_graphs.use_cuda_graphs(None)
    cuda_graphs._state["failed"] = False


def test_replay_copies_new_inputs_and_returns_fresh_outputs(stand_in: list) -> None:
    x, y = torch.arange(6.0).view(2, 3), torch.ones(2, 3)
    first = cuda_graphs.run_loop(_double_and_sum, (x, y), scale=2.0)
    second = cuda_graphs.run_loop(_double_and_sum, (x + 1, y), scale=2.0)
    assert len(stand_in) == 1 and stand_in[0].replays == 2  # one capture, replayed twice
    torch.testing.assert_close(first[0], x * 2)  # not overwritten by the second replay
    torch.testing.assert_close(second[0], (x + 1) * 2)
    torch.testing.assert_close(second[1], (x + 1 + y).sum(0))
    assert second[0].data_ptr() != stand_in[0].static_out[0].data_ptr()


def test_a_graph_per_shape_and_setting_least_recent_dropped(stand_in: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_graphs, "MAX_GRAPHS", 2)
    x = torch.ones(2, 3)
    cuda_graphs.run_loop(_double_and_sum, (x, x), scale=2.0)
    cuda_graphs.run_loop(_double_and_sum, (x, x), scale=3.0)  # another setting: a second graph
    cuda_graphs.run_loop(_double_and_sum, (x, x), scale=2.0)  # the first again: most recent now
    cuda_graphs.run_loop(_double_and_sum, (torch.ones(4, 3), torch.ones(4, 3)), scale=2.0)  # drops scale=3
    assert len(stand_in) == 3 and len(cuda_graphs._graphs) == 2
    cuda_graphs.run_loop(_double_and_sum, (x, x), scale=3.0)
    assert len(stand_in) == 4  # captured again after it was dropped


def test_a_failed_capture_warns_once_and_runs_eagerly(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    def refuse(fn, inputs, settings):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graphs, "_eager", lambda inputs: not cuda_graphs.graphs_enabled())
    monkeypatch.setattr(cuda_graphs, "_capture", refuse)
    cuda_graphs.use_cuda_graphs(True)
    try:
        x = torch.ones(2, 3)
        with caplog.at_level(logging.WARNING, logger=cuda_graphs.__name__):
            out = cuda_graphs.run_loop(_double_and_sum, (x, x), scale=2.0)
            again = cuda_graphs.run_loop(_double_and_sum, (x, x), scale=2.0)
        torch.testing.assert_close(out[0], x * 2)
        torch.testing.assert_close(again[1], (2 * x).sum(0))
        assert len([r for r in caplog.records if "capture" in r.getMessage()]) == 1
        assert not cuda_graphs.graphs_enabled()
    finally:
        cuda_graphs.use_cuda_graphs(None)
        cuda_graphs._state["failed"] = False


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("1", True), ("", True)])
def test_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool) -> None:
    monkeypatch.setenv("HCM_CUDA_GRAPHS", value)
    cuda_graphs.use_cuda_graphs(None)
    assert cuda_graphs.graphs_enabled() is enabled


def test_inside_a_callers_capture_the_loops_join_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA tensor outside autograd gets its own graph, except inside a caller's capture (the whole
    training step, hcm.training.step) or its CPU stand-in: no nested capture."""
    from hcm.model.capture import sync_free

    class _OnCuda:  # what _eager asks of a CUDA tensor
        is_cuda = True

        def numel(self) -> int:
            return 8

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # only the stand-in's flag then
    cuda_graphs.use_cuda_graphs(True)
    try:
        with torch.no_grad():
            assert not cuda_graphs._eager((_OnCuda(),))
            with sync_free():
                assert cuda_graphs._eager((_OnCuda(),))
    finally:
        cuda_graphs.use_cuda_graphs(None)


def test_cpu_tensors_never_use_graphs() -> None:
    cuda_graphs.use_cuda_graphs(True)
    try:
        assert cuda_graphs._eager((torch.ones(2, 2),))
    finally:
        cuda_graphs.use_cuda_graphs(None)


def _problem(device: str, seed: int, m: int = 12, n: int = 9, batch: int = 4):
    gen = torch.Generator().manual_seed(seed)
    logk = -torch.rand(batch, m, n, generator=gen, dtype=torch.float64) * 5
    a, b = torch.rand(batch, m, generator=gen, dtype=torch.float64) + 0.1, torch.rand(batch, n, generator=gen,
                                                                                      dtype=torch.float64) + 0.1
    a[0, -3:] = 0  # padded nodes
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    return [t.to(device).requires_grad_() for t in (logk, a, b)]


def _plan_and_grads(function, inputs, n_iters: int, grad_steps: int, weight: torch.Tensor):
    for t in inputs:
        t.grad = None
    plan = function.apply(*inputs, n_iters, grad_steps)
    (plan * weight).sum().backward()
    return [plan.detach()] + [t.grad.clone() for t in inputs]


@pytest.mark.parametrize("function", [ScalingSinkhorn, LogSinkhorn])
@pytest.mark.parametrize("grad_steps", [20, 1])
def test_stand_in_graph_replay_matches_the_eager_loop_on_cpu(stand_in: list, monkeypatch: pytest.MonkeyPatch,
                                                             function, grad_steps: int) -> None:
    """The CPU substitute of the CUDA test below: the loops run through one captured (stand-in)
    graph, replayed on fresh values, give the eager plan and gradients."""
    # eager as on CUDA: when graphs are off or autograd records the loop
    monkeypatch.setattr(cuda_graphs, "_eager",
                        lambda inputs: not cuda_graphs.graphs_enabled() or torch.is_grad_enabled())
    problems = [_problem("cpu", seed) for seed in range(3)]
    weights = [torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
               for seed, inputs in enumerate(problems)]
    cuda_graphs.use_cuda_graphs(False)
    eager = [_plan_and_grads(function, inputs, 20, grad_steps, w) for inputs, w in zip(problems, weights)]
    assert not stand_in, "the eager loop captured a graph"
    cuda_graphs.use_cuda_graphs(True)
    for inputs, w, want in zip(problems, weights, eager):  # fresh values through the same two graphs
        for expected, got in zip(want, _plan_and_grads(function, inputs, 20, grad_steps, w)):
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert [graph.replays for graph in stand_in] == [3, 3]  # the forward and the backward loop


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (CPU substitute: the stand-in test above)")
@pytest.mark.parametrize("function", [ScalingSinkhorn, LogSinkhorn])
@pytest.mark.parametrize("grad_steps", [20, 1])
def test_graph_replay_matches_the_eager_loop(function, grad_steps: int) -> None:
    for seed in range(3):  # fresh values through the same captured graph
        inputs = _problem("cuda", seed)
        weight = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64).cuda()
        cuda_graphs.use_cuda_graphs(False)
        eager = _plan_and_grads(function, inputs, 20, grad_steps, weight)
        cuda_graphs.use_cuda_graphs(True)
        graphed = _plan_and_grads(function, inputs, 20, grad_steps, weight)
        assert cuda_graphs._graphs, "no graph was captured"
        for want, got in zip(eager, graphed):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    cuda_graphs.use_cuda_graphs(None)


def test_transport_under_cpu_autocast_uses_stand_in_graphs_and_stays_finite(stand_in: list,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU substitute of the CUDA test below: under bfloat16 autocast the transport runs its
    forward and backward loops through graphs, returns float32 and finite gradients (the torch
    backend's loops, as on CUDA, not the fused CPU kernel)."""
    monkeypatch.setattr(dense, "use_fused", lambda *tensors: False)
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(8, 30, 64, generator=gen), dim=-1).requires_grad_()
    y = torch.nn.functional.normalize(torch.randn(8, 20, 64, generator=gen), dim=-1).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        moved = sinkhorn_transport(x, y, x, eps=0.1, n_iters=30, p=1, backend="torch")
    moved.square().sum().backward()
    assert moved.dtype == torch.float32 and len(stand_in) >= 2  # forward and backward loops
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(y.grad).all())


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (CPU substitute: the stand-in test above)")
def test_transport_under_autocast_on_cuda_uses_graphs_and_stays_finite() -> None:
    cuda_graphs.use_cuda_graphs(True)
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(8, 30, 64, generator=gen), dim=-1).cuda().requires_grad_()
    y = torch.nn.functional.normalize(torch.randn(8, 20, 64, generator=gen), dim=-1).cuda().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        moved = sinkhorn_transport(x, y, x, eps=0.1, n_iters=30, p=1, backend="torch")
    moved.square().sum().backward()
    assert moved.dtype == torch.float32 and len(cuda_graphs._graphs) >= 2  # forward and backward loops
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(y.grad).all())
    cuda_graphs.use_cuda_graphs(None)
