"""MELD (7 emotions, classification).

    <root>/train_sent_emo.csv   <root>/train_splits/dia{D}_utt{U}.mp4
    <root>/dev_sent_emo.csv     <root>/dev_splits_complete/dia{D}_utt{U}.mp4
    <root>/test_sent_emo.csv    <root>/output_repeated_splits_test/dia{D}_utt{U}.mp4

CSV columns: ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
Season, Episode, StartTime, EndTime``. The CSVs are read as UTF-8; the text is kept exactly as
written (curly quotes and mojibake included), and bytes that are not UTF-8 become U+FFFD.

Splits: ``train`` -> train, ``dev`` -> valid, ``test`` -> test. The label is the emotion's
index in ``neutral, surprise, fear, sadness, joy, disgust, anger``; ``labels`` keeps the
emotion and sentiment names and the speaker, season, episode and time columns as strings.
A dialogue is a group (groups sort by Dialogue_ID as numbers); its utterances in Utterance_ID
order are each other's context. The archive's names ``dia{D}_utt{U}`` are unique within a split only
(the three splits each number their dialogues from 0), so an item's id carries the archive's
split name: ``train_dia0_utt0``, ``dev_dia110_utt7``, ``test_dia0_utt0``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hcm.pipeline.datasets.base import (
    DUPLICATE_ROW,
    INVALID_ID,
    INVALID_LABEL,
    CsvRow,
    DatasetAdapter,
    Utterance,
    attach_context,
    natural_key,
    read_csv_rows,
    register_dataset,
    rejected_row,
    repair_note,
    require_paths,
)
from hcm.pipeline.media import MediaRef

MELD_COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
)
MELD_EMOTIONS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
MELD_FILES = {  # split -> (annotation CSV, clip folder)
    "train": ("train_sent_emo.csv", "train_splits"),
    "valid": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
MELD_KEPT_COLUMNS = ("Speaker", "Season", "Episode", "StartTime", "EndTime")
MELD_SOURCE = (
    "MELD.Raw.tar.gz from https://affective-meld.github.io/ (the CSVs, plus train.tar.gz, "
    "dev.tar.gz and test.tar.gz unpacked beside them)."
)


def _parse_row(row: CsvRow, split: str, clips: Path, path: Path) -> Utterance:
    """One MELD CSV row as an utterance; a malformed one is a rejected row (logged)."""
    values, where = row.values, f"{path} line {row.line}"
    dialogue = (values.get("Dialogue_ID") or "").strip()
    turn = (values.get("Utterance_ID") or "").strip()
    if not (dialogue.isdigit() and turn.isdigit()):
        return rejected_row(f"{path.name}:{row.line}", split, INVALID_ID,
                            f"{where}: Dialogue_ID {dialogue!r} / Utterance_ID {turn!r} are not integers",
                            dialogue, row.line)
    dialogue, turn = str(int(dialogue)), str(int(turn))
    item_id = f"{MELD_FILES[split][0].split('_')[0]}_dia{dialogue}_utt{turn}"
    emotion = (values.get("Emotion") or "").strip().lower()
    if emotion not in MELD_EMOTIONS:
        return rejected_row(item_id, split, INVALID_LABEL,
                            f"{where}: emotion {emotion!r} is not one of {list(MELD_EMOTIONS)}", dialogue, row.line)
    labels = {"Emotion": emotion, "Sentiment": (values.get("Sentiment") or "").strip().lower()}
    labels.update({name: (values.get(name) or "").strip() for name in MELD_KEPT_COLUMNS})
    clip = MediaRef(clips / f"dia{dialogue}_utt{turn}.mp4")
    return Utterance(
        id=item_id, split=split, label=MELD_EMOTIONS.index(emotion), labels=labels, text=values.get("Utterance") or "",
        group=dialogue, position=int(turn), video=clip, audio=clip, notes=repair_note(path, row.repaired),
    )


def read_meld_split(root: Path, split: str) -> list[Utterance]:
    """One split's rows: well-formed ones numbered and given context per dialogue, the others as
    rejected rows (see ``Utterance.dropped``)."""
    csv_name, folder = MELD_FILES[split]
    path = root / csv_name
    dialogues: dict[str, dict[int, tuple[Utterance, int]]] = defaultdict(dict)
    rejected: list[Utterance] = []
    for row in read_csv_rows(path, MELD_COLUMNS):
        utterance = _parse_row(row, split, root / folder, path)
        kept = dialogues[utterance.group].get(utterance.position) if utterance.dropped is None else None
        if kept is not None:
            utterance = rejected_row(utterance.id, split, DUPLICATE_ROW, f"{path} line {row.line}: duplicate "
                                     f"utterance {utterance.id!r} (line {kept[1]} is kept)", utterance.group, row.line)
        if utterance.dropped is not None:
            rejected.append(utterance)
            continue
        dialogues[utterance.group][utterance.position] = (utterance, row.line)
    items: list[Utterance] = []
    for turns in dialogues.values():
        group = [turns[turn][0] for turn in sorted(turns)]
        attach_context(group)
        items.extend(group)
    return items + rejected


@register_dataset
class MeldAdapter(DatasetAdapter):
    """MELD, the layout of the MELD.Raw archive."""

    name = "meld"
    task = "classification"
    classes = list(MELD_EMOTIONS)
    source = MELD_SOURCE

    def check_root(self, root: Path) -> None:
        expected = [name for files in MELD_FILES.values() for name in (files[0], files[1] + "/")]
        require_paths(self.name, Path(root), expected, self.source)

    def read(self, root: Path) -> list[Utterance]:
        return [u for split in MELD_FILES for u in read_meld_split(Path(root), split)]

    def group_key(self, group: str) -> tuple:
        return natural_key(group)
