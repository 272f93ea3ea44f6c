"""CMU-MOSEI in the MMSA layout (sentiment regression in [-3, 3]), or in CMU's own archive layout.

    <root>/label.csv                      video_id, clip_id, text, label, label_T, label_A,
                                          label_V, annotation, mode
    <root>/Raw/<video_id>/<clip_id>.mp4   one clip per utterance (video and audio)

Ids are kept as the strings written in ``label.csv`` (``0a2bK1EP5UQ``, ``188343``, leading
zeros included); an utterance's id is ``<video_id>$_$<clip_id>``. ``mode`` gives the split.
A video is a group: its clips, in ``clip_id`` order (numeric when every clip id of the video
is a number, string order otherwise), are each other's text context. Groups sort by video id
as strings.

A root without ``label.csv`` that holds CMU's archive layout (segmented videos, segmented
transcripts, ``CMU_MOSEI_Labels.csd``) is read as :mod:`hcm.pipeline.datasets.mosei_cmu`
describes, giving the same items as the MMSA layout of the same clips.
"""

from __future__ import annotations

from pathlib import Path

from hcm.pipeline.datasets.base import (
    INVALID_LABEL,
    SPLITS,
    UNKNOWN_SPLIT,
    CsvRow,
    DatasetAdapter,
    DatasetRootError,
    Utterance,
    clips_by_video,
    read_csv_rows,
    register_dataset,
    rejected_row,
    repair_note,
    require_paths,
)
from hcm.pipeline.datasets.mmsa_layout import clip_ids, finite
from hcm.pipeline.media import MediaRef

MOSEI_COLUMNS = (
    "video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode",
)
MODALITY_LABELS = ("label_T", "label_A", "label_V")  # optional unimodal scores
MOSEI_SOURCE = (
    "CMU-MOSEI raw data (http://multicomp.cs.cmu.edu/resources/cmu-mosei-dataset/) arranged as "
    "the MMSA framework distributes it: label.csv beside Raw/<video_id>/<clip_id>.mp4 "
    "(https://github.com/thuiar/MMSA), or CMU's own archive layout: Raw/Videos/Segmented/Combined/"
    "<video_id>_<segment>.mp4, Raw/Transcript/Segmented/Combined/<video_id>.txt and CMU_MOSEI_Labels.csd."
)


def _optional_float(value: str | None) -> float | None:
    """An optional numeric column: ``None`` when empty."""
    value = (value or "").strip()
    return finite(value) if value else None


def _parse_row(row: CsvRow, root: Path, path: Path) -> Utterance:
    """One ``label.csv`` row as an utterance; a malformed one is a rejected row (logged)."""
    values, where = row.values, f"{path} line {row.line}"
    mode = (values.get("mode") or "").strip()
    ids = clip_ids(row, path, mode)
    if isinstance(ids, Utterance):
        return ids
    video_id, clip_id = ids
    item_id = f"{video_id}$_${clip_id}"
    if mode not in SPLITS:
        return rejected_row(item_id, "", UNKNOWN_SPLIT, f"{where}: mode {mode!r} is not one of {list(SPLITS)}",
                            video_id, row.line)
    try:
        label = finite((values.get("label") or "").strip())
        labels = {name: _optional_float(values.get(name)) for name in MODALITY_LABELS}
    except ValueError as err:
        return rejected_row(item_id, mode, INVALID_LABEL, f"{where}: non-numeric label ({err})", video_id, row.line)
    labels["annotation"] = (values.get("annotation") or "").strip()
    clip = MediaRef(root / "Raw" / video_id / f"{clip_id}.mp4")
    return Utterance(
        id=item_id, split=mode, label=label, labels=labels, text=values.get("text") or "", group=video_id,
        position=0, video=clip, audio=clip, notes=repair_note(path, row.repaired),
    )


def read_mmsa_labels(root: Path) -> list[Utterance]:
    """Every row of ``<root>/label.csv``: well-formed ones numbered and given context per video,
    the others as rejected rows (see ``Utterance.dropped``)."""
    path = root / "label.csv"
    return clips_by_video(read_csv_rows(path, MOSEI_COLUMNS), lambda row: _parse_row(row, root, path), path)


@register_dataset
class MoseiAdapter(DatasetAdapter):
    """CMU-MOSEI, MMSA layout."""

    name = "mosei"
    task = "regression"
    classes = None
    source = MOSEI_SOURCE

    def check_root(self, root: Path) -> None:
        from hcm.pipeline.datasets.mosei_cmu import LABELS_FILE, VIDEOS, is_cmu_archive, labels_file

        if is_cmu_archive(Path(root)):
            layout = [f"{VIDEOS}/", f"{LABELS_FILE} (up to three folders deep)"]
            require_paths(self.name, Path(root), [f"{VIDEOS}/"], self.source, layout)
            if labels_file(Path(root)) is None:
                raise DatasetRootError(self.name, Path(root), layout, self.source, [LABELS_FILE])
            return
        layout = ["label.csv", "Raw/<video_id>/<clip_id>.mp4"]
        require_paths(self.name, Path(root), ["label.csv", "Raw/"], self.source, layout)

    def read(self, root: Path) -> list[Utterance]:
        from hcm.pipeline.datasets.mosei_cmu import is_cmu_archive, read_cmu_archive

        return read_cmu_archive(Path(root)) if is_cmu_archive(Path(root)) else read_mmsa_labels(Path(root))
