"""TinyNet that sends its own process a signal during one training step, for the preemption
tests that run ``hcm train`` as a subprocess: ``HCM_TEST_SIGNAL=SIGINT:3`` sends SIGINT during
the third training forward pass (unset: never)."""

from __future__ import annotations

import os
import signal

import torch
from hcm_tiny_model import TinyNet, TinyOutput

from hcm.model.config import ModelConfig


class SignalNet(TinyNet):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        name, _, at = os.environ.get("HCM_TEST_SIGNAL", ":0").partition(":")
        self.signum = getattr(signal, name, None)
        self.at, self.calls = int(at), 0

    def forward(self, batch: dict[str, torch.Tensor]) -> TinyOutput:
        if self.training and self.signum is not None:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), self.signum)
        return super().forward(batch)
