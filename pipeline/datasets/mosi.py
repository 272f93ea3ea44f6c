"""CMU-MOSI from raw video, in the MMSA layout (sentiment regression in [-3, 3]).

    <root>/label.csv                      video_id, clip_id, text, label, label_T, label_A,
                                          label_V, annotation, mode
    <root>/Raw/<video_id>/<clip_id>.mp4   one clip per opinion segment

Read as :mod:`hcm.pipeline.datasets.mmsa_layout` describes (ids, groups, context, media
suffixes). The published split (MMSA's, from the CMU-MultimodalSDK folds) is 1284 / 229 / 686
clips; the metrics are CMU-MOSEI's set (configs/datasets/mosi.json).
"""

from __future__ import annotations

from hcm.pipeline.datasets.base import register_dataset
from hcm.pipeline.datasets.mmsa_layout import MmsaLayoutAdapter


@register_dataset
class MosiAdapter(MmsaLayoutAdapter):
    """CMU-MOSI, MMSA layout."""

    name = "mosi"
    title = "CMU-MOSI"
    published_splits = {"train": 1284, "valid": 229, "test": 686}
    source = (
        "CMU-MOSI raw videos (http://multicomp.cs.cmu.edu/resources/cmu-mosi-dataset/) in the MMSA "
        "layout: MOSI/Raw and MOSI/label.csv of the MMSA framework's dataset release "
        "(https://github.com/thuiar/MMSA)."
    )
