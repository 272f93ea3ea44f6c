"""The text model and parser an extraction uses for a dataset's language.

English datasets keep the profile's own (RoBERTa, spaCy's English parser). For another
language (``Adapter.language``, e.g. ``zh`` for CH-SIMS) the paper profile's text model becomes
the dataset's ``text_model`` unless ``--roberta``/``--text-model`` name one, and the parser its
``spacy_model`` unless ``--spacy-model`` names one; where that spaCy pipeline is not installed,
the text graph is a chain over the words (each CJK character one word), with a warning that the
summary prints and the cache recipe records (``parser.model == "chain"``).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from hcm.pipeline.weights import WeightOptions

log = logging.getLogger(__name__)


class TextChoice(NamedTuple):
    """The parser and text model for transcripts in one language ("": the profile's English default)."""

    spacy_model: str
    text_model: str


# language (ISO 639-1) -> its parser and text model; the dataset readers and the MMSA importer read it
# (here, and not in the text encoders, so that the dataset registry loads without torch)
LANGUAGES = {"en": TextChoice("", ""), "zh": TextChoice("zh_core_web_sm", "xlm-roberta-large")}


def text_choices(adapter: Any, spacy_model: str | None, weights: WeightOptions | None,
                 tiny: bool) -> tuple[str | None, WeightOptions | None, list[str]]:
    """``(spacy_model, weights, warnings)`` for extracting ``adapter``'s dataset (see the module doc)."""
    from hcm.pipeline.encoders.graph import CHAIN
    from hcm.pipeline.weights import WeightOptions

    if adapter.language == "en":
        return spacy_model, weights, []
    warnings: list[str] = []
    if spacy_model is None and adapter.spacy_model:
        spacy_model = adapter.spacy_model
        if importlib.util.find_spec(spacy_model) is None:
            warnings.append(f"spaCy pipeline {spacy_model!r} for the {adapter.language!r} transcripts is not "
                            f"installed: text graphs are chains over the words (each CJK character one word); "
                            f"install it (python -m spacy download {spacy_model}) and extract into a new folder "
                            f"for dependency graphs")
            log.warning("%s", warnings[-1])
            spacy_model = CHAIN
    weights = weights or WeightOptions()
    if not tiny and adapter.text_model and not weights.given_name("roberta"):
        weights = replace(weights, paths={**weights.paths, "roberta": adapter.text_model})
        log.info("%s transcripts are %r: text model %s (--text-model chooses another)", adapter.name,
                 adapter.language, adapter.text_model)
    return spacy_model, weights, warnings
