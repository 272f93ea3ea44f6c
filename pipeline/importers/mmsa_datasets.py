"""The datasets MMSA distributes feature files for, and what ``hcm import mmsa`` knows of each.

Kept apart from the import (``hcm.pipeline.importers.mmsa``, which loads the encoders and torch)
so that the command line checks ``--dataset`` before any heavy library loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcm.core.errors import UsageError
from hcm.pipeline.datasets.language import LANGUAGES


@dataclass(frozen=True)
class MmsaDataset:
    """What the importer needs to know about one dataset MMSA distributes.

    Args:
        name: ``mosi``, ``mosei`` or ``sims`` (also the name of configs/datasets/<name>.json).
        language: the language of ``raw_text``.
        text_encoders: stage-one encoders run on ``raw_text``.
        text_model: the paper profile's text model for this language.
        spacy_model: the spaCy pipeline that parses it ("" = the profile's English default).
        chain_fallback: without that parser, use chain graphs (with a warning) instead of stopping.
    """

    name: str
    language: str
    text_encoders: tuple[str, ...] = ("roberta", "clip_text")
    text_model: str = "roberta-large"
    spacy_model: str = ""
    chain_fallback: bool = False


MMSA_DATASETS = {
    "mosi": MmsaDataset("mosi", "English"),
    "mosei": MmsaDataset("mosei", "English"),
    # CLIP RN50's text tower knows English only, so CH-SIMS text is RoBERTa-type features alone
    "sims": MmsaDataset("sims", "Chinese", ("roberta",), LANGUAGES["zh"].text_model, LANGUAGES["zh"].spacy_model,
                        True),
}


def mmsa_dataset(name: str) -> MmsaDataset:
    """The facts of ``name``; an unknown name is a usage error naming the known ones."""
    if name not in MMSA_DATASETS:
        raise UsageError(f"unknown MMSA dataset {name!r}: MMSA files exist for {', '.join(MMSA_DATASETS)}")
    return MMSA_DATASETS[name]
