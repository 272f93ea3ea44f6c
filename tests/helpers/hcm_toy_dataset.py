"""A new dataset as a user would add one: this module, its registration line and
configs/datasets/toyset.json (the test writes that file into a copy of configs/)."""

from __future__ import annotations

from pathlib import Path

from hcm.pipeline.datasets import DatasetAdapter, Utterance, register_dataset
from hcm.pipeline.datasets.base import require_paths
from hcm.pipeline.datasets.mosei import read_mmsa_labels


@register_dataset  # the one registration line
class ToySet(DatasetAdapter):
    """A corpus in the MMSA layout (label.csv and Raw/<video>/<clip>.mp4) under another name."""

    name = "toyset"
    task = "regression"
    source = "the test's own sample corpus"

    def check_root(self, root: Path) -> None:
        layout = ["label.csv", "Raw/<video>/<clip>.mp4"]
        require_paths(self.name, Path(root), ["label.csv", "Raw/"], self.source, layout)

    def read(self, root: Path) -> list[Utterance]:
        return read_mmsa_labels(Path(root))
