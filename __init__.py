"""hcm: HCMNet (AAAI 2025) for multimodal sentiment analysis, from raw clips to metrics.

Stages: ``hcm.pipeline`` turns raw datasets into feature caches (``hcm.cache``), and
``hcm.model`` trains and evaluates HCMNet on them. ``hcm.cli`` is the command line.
"""

__version__ = "0.1.0"
