"""A new model as a user would add one: this module plus its registration line."""

from __future__ import annotations

from hcm_tiny_model import TinyNet

from hcm.model.registry import MODELS


@MODELS.register("toy")  # the one registration line
class ToyNet(TinyNet):
    """The tiny stand-in network under the registered name ``toy``."""
