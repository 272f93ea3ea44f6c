"""One training step (forward, backward, clipping, AdamW update), eager or as CUDA graph replays.

On a GPU HCMNet's step is bound by kernel launches, not arithmetic (12.8 M parameters at batch
64, benchmarks/RESULTS.md). With ``TrainConfig.step_graph`` the step is recorded into two CUDA
graphs per input shape and from then on replayed:

- ``backward``: the forward pass under autocast, the objective, the backward pass, gradient
  clipping (or the gradient norm without clipping), and one vector of the loss terms and the norm;
- ``update``: the AdamW step, ``capturable``, its learning rate in a device tensor that the
  scheduler fills before each step.

Between the two replays the vector is read once, as the eager step reads the loss and the norm:
the loop's non-finite check and its loss sums are those of the eager step, and a skipped batch
skips the update as it does eagerly (:func:`backward`, :func:`optimizer_step` are the eager step).

Fixed shapes: every batch is padded to fixed node widths (per modality the widest seen so far,
rounded up to ``PAD_MULTIPLE``; padded nodes are masked out and change no output, as
tests/model check) and copied into the graph's input buffers before a replay. A batch of
another size (an epoch's last, partial batch) runs eagerly. A new shape first runs
``WARMUP_STEPS`` eager steps (real training steps) on a side stream, then is captured. Inside
the capture the model takes its sync-free paths (``hcm.model.capture``), and the Sinkhorn loops,
which replay graphs of their own when called eagerly (``hcm.model.ot.cuda_graphs``), join the
step's graph.

Eager instead of graphs: ``step_graph`` "off" (the default); a device other than CUDA, several
processes (DDP) or float16 with its grad scaler, which reads its inf check on the host (with
"on" one warning says why, with "auto" an info line); and, with one warning, after a capture or
a replay fails, for the rest of the run.

CPU dry mode: :class:`DryRecorder` stands in for the CUDA graphs. Its "replay" runs the recorded
step eagerly under the capture rules, with any host read of a tensor value refused as a CUDA
capture refuses it, so the buffers, the padding, the two-part step and the sync-free model paths
are tested without a GPU (tests/training/test_step_graph.py).
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from hcm.model.capture import sync_free
from hcm.training.checkpoints import Loop
from hcm.training.inference import autocast, model_inputs

log = logging.getLogger(__name__)

PAD_MULTIPLE = 8  # node widths are padded up to a multiple of this, so that few shapes are captured
WARMUP_STEPS = 3  # eager steps at a new shape before it is captured (CUDA's advice for whole-step capture)
MODALITY_KEYS = {"text": ("text", "text_mask"), "video": ("video", "video_mask"), "audio": ("audio", "audio_mask")}


# --------------------------------------------------------------------------- the eager step


def backward(loop: Loop, loss: Tensor, clip: float) -> str:
    """Backward pass (clipping too, without a grad scaler); says what is not finite, or ``""``.

    Every rank runs the backward pass even with a bad loss: DDP's gradient all-reduce needs them all.
    """
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    if not torch.isfinite(loss.detach()).all():
        return f"the loss became {float(loss.detach())}"
    if loop.scaler.is_enabled():
        return ""  # an fp16 grad scaler skips steps with inf/NaN gradients and lowers its scale itself
    norm = grad_norm(loop.model, clip)
    return "" if torch.isfinite(norm) else f"the gradient norm became {float(norm)}"


def grad_norm(model: nn.Module, clip: float) -> Tensor:
    """The global gradient norm, clipping the gradients to ``clip`` when it is above 0 (no host read)."""
    if clip > 0:
        return nn.utils.clip_grad_norm_(model.parameters(), clip)
    return nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def optimizer_step(loop: Loop, clip: float) -> None:
    if loop.scaler.is_enabled() and clip > 0:
        loop.scaler.unscale_(loop.optimizer)
        nn.utils.clip_grad_norm_(loop.model.parameters(), clip)
    loop.scaler.step(loop.optimizer)
    loop.scaler.update()


@dataclass
class StepTerms:
    """A step's loss terms as numbers, read from a replay (what ``add_loss_terms`` needs of an output)."""

    loss: float
    losses: dict[str, float]


# --------------------------------------------------------------------------- fixed shapes


def grown_widths(inputs: dict[str, Tensor], widths: dict[str, int]) -> dict[str, int]:
    """Per modality the widest node count so far, rounded up to ``PAD_MULTIPLE``."""
    grown = dict(widths)
    for modality, (key, _) in MODALITY_KEYS.items():
        if key in inputs:
            n = inputs[key].shape[1]
            grown[modality] = max(grown.get(modality, 0), -(-n // PAD_MULTIPLE) * PAD_MULTIPLE)
    return grown


def _pad(tensor: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """``tensor`` (B, n..., rest) zero-padded to (B, sizes..., rest)."""
    have = tuple(tensor.shape[1:1 + len(sizes)])
    if have == sizes:
        return tensor
    out = tensor.new_zeros((tensor.shape[0], *sizes, *tensor.shape[1 + len(sizes):]))
    out[(slice(None), *(slice(0, n) for n in have))] = tensor
    return out


def pad_inputs(inputs: dict[str, Tensor], widths: dict[str, int]) -> dict[str, Tensor]:
    """The batch with every modality padded to ``widths`` nodes (masked out; ``text_adj`` too)."""
    out = dict(inputs)
    for modality, keys in MODALITY_KEYS.items():
        for key in keys:
            if key in inputs:
                out[key] = _pad(inputs[key], (widths[modality],))  # (B, W, D) and (B, W)
    if "text_adj" in inputs:
        out["text_adj"] = _pad(inputs["text_adj"], (widths["text"], widths["text"]))  # (B, W_t, W_t)
    return out


def shape_key(inputs: dict[str, Tensor]) -> tuple:
    return tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(inputs.items()))


# --------------------------------------------------------------------------- recorders


class CudaRecorder:
    """Records into ``torch.cuda.CUDAGraph``; the graphs of one shape share one memory pool."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.pool = None

    @contextmanager
    def side_stream(self) -> Iterator[None]:
        """Warm-up steps run here, so that capture finds library handles and workspaces made."""
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            yield
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def new_pool(self) -> None:
        self.pool = torch.cuda.graph_pool_handle()

    def capture(self, fn: Callable[[], None], strict: bool = True) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            fn()
        return graph


class HostReadError(RuntimeError):
    """A value was read on the host inside the dry mode's stand-in capture (CUDA would refuse it)."""


class _RefuseHostReads(TorchDispatchMode):
    """Raises on the ops that read tensor values on the host (``bool``, ``float``, ``item``, ``nonzero``)."""

    REFUSED = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::equal")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.REFUSED:
            raise HostReadError(f"{func._schema.name} reads a tensor value on the host inside a graph capture; "
                                "operation not permitted when stream is capturing")
        return func(*args, **(kwargs or {}))


class _DryGraph:
    def __init__(self, fn: Callable[[], None], recorder: DryRecorder, strict: bool) -> None:
        self.fn, self.recorder, self.strict = fn, recorder, strict

    def replay(self) -> None:
        self.recorder.replays += 1
        with sync_free(), (_RefuseHostReads() if self.strict else nullcontext()):
            self.fn()


class DryRecorder:
    """The CPU stand-in of :class:`CudaRecorder`: a "capture" keeps the function, a "replay" runs it
    eagerly under the capture rules. ``strict`` graphs refuse host reads; the update is not strict,
    since plain AdamW on the CPU reads its learning rate (on CUDA, ``capturable`` AdamW does not)."""

    def __init__(self) -> None:
        self.captures = 0
        self.replays = 0

    def side_stream(self):
        return nullcontext()

    def new_pool(self) -> None:
        pass

    def capture(self, fn: Callable[[], None], strict: bool = True) -> _DryGraph:
        self.captures += 1
        return _DryGraph(fn, self, strict)


# --------------------------------------------------------------------------- the graphed step


@dataclass
class _Graphs:
    """The two recorded parts of one shape and the buffers they read and write."""

    key: tuple
    inputs: dict[str, Tensor]  # static input buffers, copied into before each replay
    names: list[str]  # the loss parts, in the order of ``terms`` after the loss
    terms: Tensor  # (2 + parts,): the loss, its parts, the gradient norm
    grads: list[Tensor | None]  # the gradients the graphs write and read
    backward: Any
    update: Any


def eager_reason(loop: Loop, device: torch.device, world: int) -> str:
    """Why this run cannot use graphs, or ``""``."""
    if device.type != "cuda":
        return f"the device is {device.type}; CUDA graphs need a CUDA GPU (--device cuda)"
    if world > 1:
        return f"the run has {world} processes, and DDP's gradient all-reduce is not captured"
    if loop.scaler.is_enabled():
        return "float16 autocast's grad scaler reads its inf check on the host every step (use amp bf16 or off)"
    return ""


def new_recorder(device: torch.device) -> CudaRecorder | DryRecorder:
    return CudaRecorder(device)


def prepare_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Make the optimizer capturable: the learning rate a device tensor (the scheduler fills it in
    place, so the replayed update reads each step's rate), ``capturable`` on CUDA. Checkpoints keep
    the plain form (a float rate), so any run can resume them."""
    capturable = [bool(group.get("capturable", False)) for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)  # 0-dim float32
        if device.type == "cuda":
            group["capturable"] = True
    if device.type == "cuda":
        for state in optimizer.state.values():
            if "step" in state:
                state["step"] = state["step"].to(device=device, dtype=torch.float32)

    def plain_groups(_: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
        for group, was in zip(state_dict["param_groups"], capturable):
            group["lr"] = float(group["lr"])
            group["capturable"] = was
        return state_dict

    optimizer.register_state_dict_post_hook(plain_groups)


class TrainStep:
    """The step of one run: ``terms, fault = step.backward(batch)``; then ``step.update()`` unless
    the batch is skipped. ``terms`` has ``.loss`` and ``.losses`` (an output, or :class:`StepTerms`)."""

    def __init__(self, loop: Loop, clip: float, device: torch.device, batch_size: int,
                 recorder: CudaRecorder | DryRecorder | None = None) -> None:
        self.loop, self.clip, self.device, self.batch_size = loop, clip, device, batch_size
        self.recorder = recorder
        self.widths: dict[str, int] = {}
        self.graphs: _Graphs | None = None
        self.warm_key: tuple | None = None
        self.warm = 0
        self.replayed = False  # the last backward was a replay: its update is one too
        self.names: list[str] = []
        if recorder is not None:
            prepare_optimizer(loop.optimizer, device)

    def backward(self, batch: dict[str, Tensor]) -> tuple[Any, str]:
        inputs = model_inputs(batch, self.device)
        self.replayed = False
        if self.recorder is None or inputs["label"].shape[0] != self.batch_size:
            return self._eager(inputs)
        self.widths = grown_widths(inputs, self.widths)
        inputs = pad_inputs(inputs, self.widths)
        key = shape_key(inputs)
        if self.graphs is None or self.graphs.key != key:
            self.graphs = None
            if key != self.warm_key:
                self.warm_key, self.warm = key, 0
            if self.warm < WARMUP_STEPS:
                self.warm += 1
                with self.recorder.side_stream():
                    return self._eager(inputs)
            try:
                self.graphs = self._capture(inputs, key)
            except RuntimeError as error:
                return self._give_up(error, inputs)
        try:
            return self._replay(inputs)
        except RuntimeError as error:
            return self._give_up(error, inputs)

    def update(self) -> None:
        if self.replayed:
            self.graphs.update.replay()
        else:
            optimizer_step(self.loop, self.clip)

    def _eager(self, inputs: dict[str, Tensor]) -> tuple[Any, str]:
        with autocast(self.device, self.loop.amp):
            out = self.loop.model(inputs)
        self.names = sorted(getattr(out, "losses", None) or {})  # the parts a capture will read
        return out, backward(self.loop, out.loss, self.clip)

    def _give_up(self, error: RuntimeError, inputs: dict[str, Tensor]) -> tuple[Any, str]:
        log.warning("the training step could not be recorded as a CUDA graph (%s); it runs eagerly from now on",
                    str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__)
        self.recorder, self.graphs = None, None
        return self._eager(inputs)

    def _capture(self, inputs: dict[str, Tensor], key: tuple) -> _Graphs:
        loop, amp, names = self.loop, self.loop.amp, self.names
        static = {k: v.clone() for k, v in inputs.items()}
        terms = torch.zeros(2 + len(names), device=self.device)

        def forward_backward() -> None:
            loop.optimizer.zero_grad(set_to_none=False)  # the gradient buffers stay where the graph wrote them
            with autocast(self.device, amp, cache_enabled=False):
                out = loop.model(static)
            out.loss.backward()
            losses = getattr(out, "losses", None) or {}
            parts = [torch.as_tensor(losses[name], device=self.device).float() for name in names]
            norm = grad_norm(loop.model, self.clip)
            terms.copy_(torch.stack([out.loss.detach().float(), *parts, norm.float()]))

        self.recorder.new_pool()
        backward_graph = self.recorder.capture(forward_backward, strict=True)
        update_graph = self.recorder.capture(loop.optimizer.step, strict=False)
        grads = [p.grad for p in loop.model.parameters()]
        log.info("training step recorded as CUDA graphs for inputs %s", {k: tuple(v.shape) for k, v in static.items()})
        return _Graphs(key, static, names, terms, grads, backward_graph, update_graph)

    def _replay(self, inputs: dict[str, Tensor]) -> tuple[StepTerms, str]:
        graphs = self.graphs
        for key, value in inputs.items():
            graphs.inputs[key].copy_(value, non_blocking=True)
        for param, grad in zip(self.loop.model.parameters(), graphs.grads):
            param.grad = grad  # an eager step in between may have replaced them
        graphs.backward.replay()
        values = graphs.terms.tolist()  # the one host read of a step, as the eager step's checks
        self.replayed = True
        loss, norm = values[0], values[-1]
        terms = StepTerms(loss, dict(zip(graphs.names, values[1:-1])))
        if not math.isfinite(loss):
            return terms, f"the loss became {loss}"
        return terms, "" if math.isfinite(norm) else f"the gradient norm became {norm}"


def make_train_step(loop: Loop, step_graph: str, clip: float, device: torch.device, world: int,
                    batch_size: int) -> TrainStep:
    """The run's :class:`TrainStep`: graphed under ``step_graph`` "on"/"auto" where possible, else eager."""
    if step_graph == "off":
        return TrainStep(loop, clip, device, batch_size)
    reason = eager_reason(loop, device, world)
    if reason:
        (log.warning if step_graph == "on" else log.info)(
            "step_graph %s: the training step runs eagerly: %s", step_graph, reason)
        return TrainStep(loop, clip, device, batch_size)
    return TrainStep(loop, clip, device, batch_size, new_recorder(device))
