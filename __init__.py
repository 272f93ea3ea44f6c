"""hcm: HCMNet (AAAI 2025) for multimodal sentiment analysis, from raw clips to metrics.

Stages: ``hcm.pipeline`` turns raw datasets into feature caches (``hcm.cache``), and
``hcm.training`` trains and evaluates HCMNet (``hcm.model``) on them. Every command is a function
in ``hcm.apps``; ``hcm.cli`` is the command line that calls them (docs/architecture.md).
"""

__version__ = "0.1.0"
