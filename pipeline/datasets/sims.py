"""CH-SIMS and CH-SIMS v2 from raw video, in the MMSA layout (Chinese, sentiment in [-1, 1]).

    <root>/label.csv                      video_id, clip_id, text, label, label_T, label_A,
                                          label_V, annotation, mode
    <root>/Raw/<video_id>/<clip_id>.mp4   e.g. Raw/video_0001/0001.mp4

Read as :mod:`hcm.pipeline.datasets.mmsa_layout` describes. The transcripts are Chinese: the
paper profile's text model becomes ``xlm-roberta-large`` (``--roberta``/``--text-model``
choose another, e.g. a Chinese RoBERTa folder) and the parser ``zh_core_web_sm``; where that
spaCy pipeline is not installed the text graph is a chain over the characters, recorded in the
cache (``--spacy-model`` names another). Published splits: CH-SIMS 1368 / 456 / 457, CH-SIMS v2
(supervised part) 2722 / 647 / 1034. Metrics: MMSA's CH-SIMS set (configs/datasets/<name>.json).
"""

from __future__ import annotations

from hcm.pipeline.datasets.base import register_dataset
from hcm.pipeline.datasets.language import LANGUAGES
from hcm.pipeline.datasets.mmsa_layout import MmsaLayoutAdapter

SIMS_SOURCE = (
    "CH-SIMS from the MMSA framework's dataset release (https://github.com/thuiar/MMSA): "
    "SIMS/Raw and SIMS/label.csv."
)


@register_dataset
class SimsAdapter(MmsaLayoutAdapter):
    """CH-SIMS, MMSA layout."""

    name = "sims"
    title = "CH-SIMS"
    label_range = (-1.0, 1.0)
    published_splits = {"train": 1368, "valid": 456, "test": 457}
    language = "zh"
    spacy_model, text_model = LANGUAGES[language]
    source = SIMS_SOURCE


@register_dataset
class SimsV2Adapter(SimsAdapter):
    """CH-SIMS v2 (supervised part), MMSA layout."""

    name = "simsv2"
    title = "CH-SIMS v2"
    published_splits = {"train": 2722, "valid": 647, "test": 1034}
    source = (
        "CH-SIMS v2 (https://github.com/thuiar/ch-sims-v2): the supervised part's Raw/ and "
        "label.csv, in the MMSA layout."
    )
