"""Dataset adapters: each reads one raw dataset layout and yields utterances.

``get_dataset(name)`` gives an adapter from the registry; importing this package registers
``mosei``, ``meld``, ``iemocap``, ``sample``, ``mosi``, ``sims``, ``simsv2`` and ``custom``.
"""

# importing the adapter modules registers them
from hcm.pipeline.datasets import custom, iemocap, meld, mosei, mosi, sample, sims  # noqa: F401
from hcm.pipeline.datasets.base import (
    AnnotationError,
    DatasetAdapter,
    DatasetRootError,
    Selection,
    Utterance,
    dataset_names,
    get_dataset,
    register_dataset,
)
from hcm.pipeline.datasets.splits import SplitFile, SplitFileError
from hcm.pipeline.media import MediaRef

__all__ = [
    "AnnotationError",
    "DatasetAdapter",
    "DatasetRootError",
    "MediaRef",
    "Selection",
    "SplitFile",
    "SplitFileError",
    "Utterance",
    "dataset_names",
    "get_dataset",
    "register_dataset",
]
