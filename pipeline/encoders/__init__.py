"""Encoders used by stage one (RoBERTa, EfficientNet, CLIP RN50, ESResNeXt-FBSP, Mel, spaCy graphs).

Importing this package registers every encoder (the modules below register themselves when
imported); an encoder is added by one new module and one line here.
"""

from hcm.pipeline.encoders import audio, efficientnet, image, mel, text  # noqa: F401  (registers the encoders)
from hcm.pipeline.encoders.base import create_encoder, encoder_class, encoder_classes, encoder_names

__all__ = ["create_encoder", "encoder_class", "encoder_classes", "encoder_names"]
