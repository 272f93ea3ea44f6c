"""Decorator registry of the networks stage two can train: a model is one module whose factory
(``ModelConfig -> nn.Module`` with HCMNet's batch and output contract) carries
``@MODELS.register("name")``; ``hcm train --model-factory name`` then trains it.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from hcm.core.registry import Registry
from hcm.model.config import ModelConfig

ModelFactory = Callable[[ModelConfig], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
