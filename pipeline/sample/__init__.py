"""Synthetic corpora in the real raw layouts of MOSEI, MELD, IEMOCAP, CMU-MOSI, CH-SIMS (v1, v2)
and of a corpus of one's own (``custom``) (``hcm sample``).

Each corpus carries a learnable, noisy signal of its labels in text, audio and video
independently (see :mod:`hcm.pipeline.sample.content` and ``docs/sample.md``), so the dataset
readers and the whole pipeline can be tested and demonstrated offline.
"""

from hcm.pipeline.sample import iemocap, meld, mmsa_corpora, mosei  # noqa: E402,F401  (registers the corpora)
from hcm.pipeline.sample.registry import (
    Fault,
    SampleSummary,
    available_samples,
    format_summary,
    get_sample,
    make_sample,
    make_samples,
    register_sample,
    sample_into_workspace,
)

__all__ = [
    "Fault", "SampleSummary", "available_samples", "format_summary", "get_sample",
    "make_sample", "make_samples", "register_sample", "sample_into_workspace",
]
