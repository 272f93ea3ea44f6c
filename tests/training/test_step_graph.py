"""hcm.training.step: the training step as graph replays, checked on the CPU through the dry mode's
stand-in graphs (the replays run the recorded step eagerly under the capture rules, refusing host
reads), against the eager step; and the fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from hcm.model.capture import capturing, sync_free
from hcm.model.config import ModelConfig
from hcm.model.hcmnet import build_model
from hcm.model.losses import pair_contrastive
from hcm.model.ot import sinkhorn
from hcm.training import step as S
from hcm.training.checkpoints import Loop
from hcm.training.settings import TrainConfig
from hcm.training.trainer import make_scheduler, train

DIMS = {"text": 12, "video": 10, "audio": 8}
BATCH = 4
LR = 3e-3
# Dry graph and eager steps differ by rounding only: inputs padded wider, inside a capture the
# Sinkhorn solver's log-domain path (the eager step's scaling path), AdamW's rate a float32 tensor.
# The losses of every step agree to 1e-5 and the trained model's logits to 1e-4 (relative); a
# parameter agrees to a fifth of one step's move (0.2 lr): those whose true gradient is zero (the
# attention key biases, which softmax ignores) get rounding noise, which AdamW scales to steps of
# up to lr; measured 0.12 lr at most over these 11 steps.
LOSS_TOLERANCE = dict(rtol=1e-5, atol=1e-7)
LOGIT_TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(seed: int, widest: int, size: int = BATCH) -> dict[str, torch.Tensor]:
    """A padded batch whose samples have 1..``widest`` nodes (so the padded width varies by batch)."""
    gen = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for name, dim in DIMS.items():
        lengths = torch.randint(1, widest + 1, (size,), generator=gen)
        n = int(lengths.max())
        batch[name] = torch.randn(size, n, dim, generator=gen)  # (B, N, D)
        batch[f"{name}_mask"] = torch.arange(n)[None] < lengths[:, None]  # (B, N)
    n_t = batch["text"].shape[1]
    adj = (torch.rand(size, n_t, n_t, generator=gen) > 0.6).float()
    batch["text_adj"] = ((adj + adj.transpose(1, 2)) > 0).float() * (1 - torch.eye(n_t))
    batch["label"] = torch.randint(0, 3, (size,), generator=gen)
    batch["index"] = torch.arange(size)
    return batch


# six batches padded to width 8, four to width 16 (a second shape), then a partial batch
BATCHES = [(seed, 7 if seed < 6 else 13, BATCH) for seed in range(10)] + [(10, 5, 3)]


def _loop(reading: str, clip: float, device: str = "cpu", amp: torch.dtype | None = None) -> Loop:
    torch.manual_seed(0)
    cfg = ModelConfig(d_text=12, d_video=10, d_audio=8, d_model=16, num_heads=2, m_ctn=2, m_gcn=2, m_c=2,
                      ot_iters=20, num_classes=3, reading=reading, dropout=0.0, ot_backend="torch")
    model = build_model(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    scheduler = make_scheduler(optimizer, TrainConfig(epochs=2, batch_size=BATCH, warmup_epochs=0.5), len(BATCHES))
    return Loop(model, optimizer, scheduler, torch.amp.GradScaler(device, enabled=False), amp)


def _train(loop: Loop, step: S.TrainStep) -> list[float]:
    losses = []
    for seed, widest, size in BATCHES:
        terms, fault = step.backward(_batch(seed, widest, size))
        assert fault == ""
        step.update()
        loop.scheduler.step()
        losses.append(float(torch.as_tensor(terms.loss).detach()))
    return losses


@pytest.mark.parametrize("reading, clip", [("paper", 0.0), ("hcm", 1.0)])
def test_dry_graph_steps_give_the_eager_losses_and_weights(reading: str, clip: float) -> None:
    eager_loop = _loop(reading, clip)
    eager = _train(eager_loop, S.TrainStep(eager_loop, clip, torch.device("cpu"), BATCH))
    graph_loop = _loop(reading, clip)
    recorder = S.DryRecorder()
    graphed = _train(graph_loop, S.TrainStep(graph_loop, clip, torch.device("cpu"), BATCH, recorder))
    # per shape: WARMUP_STEPS eager steps, then a capture of both parts; the partial batch runs eagerly
    assert recorder.captures == 4
    assert recorder.replays == 2 * (6 - S.WARMUP_STEPS + 4 - S.WARMUP_STEPS)
    torch.testing.assert_close(torch.tensor(graphed), torch.tensor(eager), **LOSS_TOLERANCE)
    for (name, got), want in zip(graph_loop.model.named_parameters(), eager_loop.model.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=0.2 * LR, msg=lambda m, name=name: f"{name}: {m}")
    held_out = _batch(99, 9)
    with torch.no_grad():
        logits = [loop.model.eval()(held_out).prediction for loop in (graph_loop, eager_loop)]
    torch.testing.assert_close(*logits, **LOGIT_TOLERANCE)
    rate = graph_loop.optimizer.param_groups[0]["lr"]
    assert isinstance(rate, torch.Tensor) and float(rate) == pytest.approx(eager_loop.optimizer.param_groups[0]["lr"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CPU substitute: the dry test above)")
@pytest.mark.parametrize("amp, rtol", [(None, 1e-5), (torch.bfloat16, 1e-2)])
def test_cuda_graph_steps_give_the_eager_losses(amp: torch.dtype | None, rtol: float) -> None:
    """Not run where hcm was written (no GPU there): the real capture against eager steps."""
    device = torch.device("cuda")
    eager_loop, graph_loop = _loop("paper", 1.0, "cuda", amp), _loop("paper", 1.0, "cuda", amp)
    eager = _train(eager_loop, S.TrainStep(eager_loop, 1.0, device, BATCH))
    step = S.TrainStep(graph_loop, 1.0, device, BATCH, S.CudaRecorder(device))
    graphed = _train(graph_loop, step)
    assert step.recorder is not None and step.graphs is not None, "the capture failed; the log says why"
    torch.testing.assert_close(torch.tensor(graphed), torch.tensor(eager), rtol=rtol, atol=1e-6)


def test_padding_grows_by_multiples_and_keeps_the_values() -> None:
    batch = _batch(0, 7)
    widths = S.grown_widths(batch, {})
    assert set(widths.values()) == {S.PAD_MULTIPLE} and S.grown_widths(_batch(1, 3), widths) == widths
    padded = S.pad_inputs(batch, widths)
    n = batch["text"].shape[1]
    assert padded["text_adj"].shape == (BATCH, 8, 8) and not padded["text_mask"][:, n:].any()
    torch.testing.assert_close(padded["text"][:, :n], batch["text"], rtol=0, atol=0)
    assert S.grown_widths({"text": torch.zeros(1, 9, 1)}, {"text": 8}) == {"text": 16}


class _ReadsOnHost(nn.Module):
    """A model whose forward reads a value on the host, which a CUDA capture refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(DIMS["text"], 3)

    def forward(self, batch: dict[str, torch.Tensor]):
        pooled = (batch["text"] * batch["text_mask"][..., None]).sum(1)  # (B, D)
        scale = 2.0 if float(pooled.abs().sum()) > 0 else 1.0  # the host read
        logits = self.head(pooled) * scale
        loss = nn.functional.cross_entropy(logits, batch["label"])
        return type("Out", (), {"loss": loss, "losses": {"task": loss.detach()}})()


def _host_loop() -> Loop:
    torch.manual_seed(0)
    model = _ReadsOnHost()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return Loop(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), None)


def test_a_capture_that_reads_on_the_host_warns_once_and_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    eager_loop, graph_loop = _host_loop(), _host_loop()
    eager = _train(eager_loop, S.TrainStep(eager_loop, 0.0, torch.device("cpu"), BATCH))
    recorder = S.DryRecorder()
    with caplog.at_level(logging.WARNING, logger=S.__name__):
        graphed = _train(graph_loop, S.TrainStep(graph_loop, 0.0, torch.device("cpu"), BATCH, recorder))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "runs eagerly from now on" in warnings[0] and "_local_scalar_dense" in warnings[0]
    assert recorder.captures == 2 and recorder.replays == 1  # the failed replay; none after it
    torch.testing.assert_close(torch.tensor(graphed), torch.tensor(eager), rtol=1e-6, atol=1e-7)
    for got, want in zip(graph_loop.model.parameters(), eager_loop.model.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


class _NanOnMarkedBatches(nn.Module):
    """Loss NaN where the first text value is above 100, decided on the device (no host read)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(DIMS["text"], 3)

    def forward(self, batch: dict[str, torch.Tensor]):
        pooled = (batch["text"] * batch["text_mask"][..., None]).sum(1)  # (B, D)
        loss = nn.functional.cross_entropy(self.head(pooled), batch["label"])
        loss = loss + torch.where(batch["text"][0, 0, 0] > 100, torch.nan, 0.0)
        return type("Out", (), {"loss": loss, "losses": {"task": loss.detach()}})()


def test_a_non_finite_replay_is_reported_and_its_update_can_be_skipped() -> None:
    torch.manual_seed(0)
    model = _NanOnMarkedBatches()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loop = Loop(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                torch.amp.GradScaler("cpu", enabled=False), None)
    recorder = S.DryRecorder()
    step = S.TrainStep(loop, 1.0, torch.device("cpu"), BATCH, recorder)
    for seed in range(S.WARMUP_STEPS + 1):  # warm-up, then the capture and its first replay
        assert step.backward(_batch(seed, 5))[1] == ""
        step.update()
    bad = _batch(9, 5)
    bad["text"][0, 0, 0] = 1000.0
    before = [p.detach().clone() for p in model.parameters()]
    terms, fault = step.backward(bad)
    assert step.replayed and recorder.replays == 3 and fault == "the loss became nan"  # a replay, then the read
    assert [torch.equal(p, q) for p, q in zip(model.parameters(), before)] == [True, True]  # no update: skipped
    terms, fault = step.backward(_batch(10, 5))
    assert fault == "" and step.replayed and terms.loss == pytest.approx(terms.losses["task"])
    step.update()
    assert not torch.equal(model.head.weight, before[0])


@pytest.mark.parametrize("mode, warned", [("on", True), ("auto", False)])
def test_on_the_cpu_the_step_is_eager_and_on_says_why(mode: str, warned: bool,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    loop = _host_loop()
    with caplog.at_level(logging.INFO, logger=S.__name__):
        step = S.make_train_step(loop, mode, 0.0, torch.device("cpu"), 1, BATCH)
    assert step.recorder is None and not isinstance(loop.optimizer.param_groups[0]["lr"], torch.Tensor)
    levels = [r.levelno for r in caplog.records if "CUDA graphs need a CUDA GPU" in r.getMessage()]
    assert levels == [logging.WARNING if warned else logging.INFO]
    assert S.make_train_step(loop, "off", 0.0, torch.device("cpu"), 1, BATCH).recorder is None


def test_fp16_and_ddp_are_named_as_reasons() -> None:
    loop = _host_loop()
    assert "2 processes" in S.eager_reason(loop, torch.device("cuda"), 2)
    loop.scaler = torch.amp.GradScaler("cpu", enabled=True)
    assert "grad scaler" in S.eager_reason(loop, torch.device("cuda"), 1)


def test_checkpoints_keep_a_float_rate_while_the_scheduler_fills_the_tensor() -> None:
    loop = _host_loop()
    loop.scheduler = torch.optim.lr_scheduler.LambdaLR(loop.optimizer, lambda s: 0.5 ** s)
    S.prepare_optimizer(loop.optimizer, torch.device("cpu"))
    rate = loop.optimizer.param_groups[0]["lr"]
    loop.optimizer.step()
    loop.scheduler.step()
    assert loop.optimizer.param_groups[0]["lr"] is rate and float(rate) == pytest.approx(5e-3)
    saved = loop.optimizer.state_dict()["param_groups"][0]
    assert type(saved["lr"]) is float and saved["lr"] == pytest.approx(5e-3) and saved["capturable"] is False
    assert isinstance(loop.optimizer.param_groups[0]["lr"], torch.Tensor)  # the live group is unchanged


def test_the_setting_is_checked() -> None:
    assert TrainConfig(step_graph="auto").step_graph == "auto"
    with pytest.raises(ValueError, match="step_graph must be off, auto or on"):
        TrainConfig(step_graph="yes")


def test_sync_free_model_paths_match_the_checked_ones() -> None:
    """Inside a capture the OT input checks and the empty-sample test are skipped, the log-domain
    solver runs, and a contrastive pair without samples is zero without a host read."""
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 5, 4, generator=gen)
    a, b = torch.rand(3, 5, generator=gen), torch.rand(3, 4, generator=gen)
    a[1] = 0  # a sample with no mass: its plan is zero
    a, b = a / a.sum(1, keepdim=True).clamp_min(1e-9), b / b.sum(1, keepdim=True)
    checked = sinkhorn(cost, a, b, eps=0.1, n_iters=30, backend="torch")
    assert not capturing()
    with sync_free(), S._RefuseHostReads():
        assert capturing()
        free = sinkhorn(cost, a, b, eps=0.1, n_iters=30, backend="torch")
    torch.testing.assert_close(free, checked, rtol=1e-4, atol=1e-6)
    assert float(free[1].abs().sum()) == 0.0
    x = torch.randn(4, 6, generator=gen, requires_grad=True)
    y = torch.randn(4, 6, generator=gen)
    none = torch.zeros(4, dtype=torch.bool)
    with sync_free(), S._RefuseHostReads():
        loss = pair_contrastive(x, y, torch.arange(4), none, 0.1)
        loss.backward()
    assert float(loss.detach()) == 0.0 and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) == 0.0


def test_train_with_step_graph_on_through_dry_graphs_matches_off(tiny_cache, tiny_facts, tiny_net, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole loop (scheduler, loss sums, checkpoints, the partial last batch) with the dry graphs."""
    cache = tiny_cache()
    recorders: list[S.DryRecorder] = []

    def dry(device: torch.device) -> S.DryRecorder:
        recorders.append(S.DryRecorder())
        return recorders[-1]

    def run(name: str, mode: str):
        cfg = TrainConfig(epochs=3, batch_size=8, lr=0.02, patience=0, seed=3, warmup_epochs=0.5, step_graph=mode)
        return train(cache, tmp_path / name, cfg, ModelConfig(), facts=tiny_facts(), model_factory=tiny_net.factory,
                     progress=False)

    eager = run("eager", "off")
    monkeypatch.setattr(S, "eager_reason", lambda loop, device, world: "")
    monkeypatch.setattr(S, "new_recorder", dry)
    graphed = run("graphed", "on")
    assert len(recorders) == 1 and recorders[0].replays > 0
    for want, got in zip(eager.history, graphed.history):
        for key in ("train_loss", "valid_loss", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    saved = torch.load(graphed.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert type(saved["optimizer"]["param_groups"][0]["lr"]) is float
