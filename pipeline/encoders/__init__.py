"""Encoders used by stage one (RoBERTa, EfficientNet, CLIP RN50, ESResNeXt-FBSP, Mel, spaCy graphs)."""
