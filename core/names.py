"""Names shared by every stage: modalities, tasks and the data splits."""

from __future__ import annotations

MODALITIES = ("text", "video", "audio")  # canonical order everywhere (cache masks, model inputs, tables)
MODALITY_LETTERS = {"t": "text", "v": "video", "a": "audio"}
REGRESSION = "regression"  # sentiment score (MOSEI, the sample)
CLASSIFICATION = "classification"  # emotion classes (MELD, IEMOCAP)
TASKS = (REGRESSION, CLASSIFICATION)
SPLITS = ("train", "valid", "test")
