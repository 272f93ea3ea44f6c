"""IEMOCAP (6 emotions, classification).

    <root>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt     labels, one summary line per turn
    <root>/Session{1..5}/dialog/transcriptions/<dialog>.txt    `turn_id [start-end]: text`
    <root>/Session{1..5}/dialog/avi/DivX/<dialog>.avi          one video per dialogue
    <root>/Session{1..5}/sentences/wav/<dialog>/<turn>.wav     one 16 kHz wav per turn

Labels come from the EmoEvaluation summary lines ``[start - end] turn emo [V, A, D]``
(annotator lines are ignored). Six classes are kept, in this index order: hap, sad, neu, ang,
exc, fru -> happy, sad, neutral, angry, excited, frustrated; turns with any other label (xxx,
sur, fea, dis, oth) are left out. ``labels`` keeps the code and the V/A/D ratings.

Video is the dialogue's avi cut to the turn's ``[start, end]``; audio is the turn's wav.
A dialogue is a group (groups sort by name); its kept turns are numbered in time order. The
text context is the 2 former and 2 latter turns of the whole transcript, including turns
whose label is left out, since they are part of the conversation.

Splits: Session 5 is test. From sessions 1-4, a fraction (default 10 %) of the dialogues,
never single turns, is validation: the dialogues whose SHA-256 of the name sorts first,
``round(fraction * n)`` of them, so the choice is fixed for a given set of dialogues. The
sizes are logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hcm.pipeline.datasets.base import (
    DatasetAdapter,
    Utterance,
    context_window,
    register_dataset,
    require_paths,
)
from hcm.pipeline.media import MediaRef

log = logging.getLogger(__name__)

IEMOCAP_CODES = ("hap", "sad", "neu", "ang", "exc", "fru")
IEMOCAP_CLASSES = ("happy", "sad", "neutral", "angry", "excited", "frustrated")
SESSIONS = (1, 2, 3, 4, 5)
TEST_SESSION = 5
VALID_FRACTION = 0.1
IEMOCAP_SOURCE = (
    "the IEMOCAP release (IEMOCAP_full_release), granted on request by USC SAIL: "
    "https://sail.usc.edu/iemocap/"
)

_NUMBER = r"(\d+(?:\.\d*)?)"
SUMMARY_LINE = re.compile(
    rf"^\[\s*{_NUMBER}\s*-\s*{_NUMBER}\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]"
)
TRANSCRIPT_LINE = re.compile(rf"^(\S+)\s*\[\s*{_NUMBER}\s*-\s*{_NUMBER}\s*\]:\s?(.*)$")
UTTERANCE_ID = re.compile(r"^Ses\d{2}[FM]_\S+_[FM]\d{3}$")


@dataclass(frozen=True)
class Turn:
    """One line of an EmoEvaluation summary or of a transcription."""

    id: str
    start: float
    end: float
    text: str = ""
    emotion: str = ""
    vad: tuple[float | None, float | None, float | None] = (None, None, None)


def _vad(values: str) -> tuple[float | None, float | None, float | None]:
    """``"2.5, 3.0, 3.5"`` -> (valence, activation, dominance); unreadable parts are None."""
    parts = [p.strip() for p in values.split(",")]
    numbers: list[float | None] = []
    for part in (parts + ["", "", ""])[:3]:
        try:
            numbers.append(float(part))
        except ValueError:
            numbers.append(None)
    return numbers[0], numbers[1], numbers[2]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def read_evaluation(path: Path) -> dict[str, Turn]:
    """The summary lines of one EmoEvaluation file, by turn id."""
    turns: dict[str, Turn] = {}
    for number, line in enumerate(_lines(path), start=1):
        match = SUMMARY_LINE.match(line.strip())
        if match is None:
            if line.startswith("["):
                log.warning("%s line %d: unreadable summary line %r; skipped", path, number, line)
            continue
        start, end, turn_id, emotion, vad = match.groups()
        turns[turn_id] = Turn(turn_id, float(start), float(end), emotion=emotion, vad=_vad(vad))
    return turns


def read_transcript(path: Path) -> dict[str, Turn]:
    """The utterance lines of one transcription, by turn id (other lines are skipped)."""
    turns: dict[str, Turn] = {}
    for line in _lines(path):
        match = TRANSCRIPT_LINE.match(line.strip())
        if match is None or UTTERANCE_ID.match(match.group(1)) is None:
            continue
        turn_id, start, end, text = match.groups()
        turns[turn_id] = Turn(turn_id, float(start), float(end), text=text.strip())
    return turns


def valid_dialogues(dialogues: list[str], fraction: float) -> set[str]:
    """The ``round(fraction * n)`` dialogues whose SHA-256 of the name sorts first."""
    count = round(fraction * len(dialogues))
    if fraction > 0 and len(dialogues) > 1:
        count = min(max(count, 1), len(dialogues) - 1)
    ranked = sorted(dialogues, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    return set(ranked[:count])


@register_dataset
class IemocapAdapter(DatasetAdapter):
    """IEMOCAP, the layout of IEMOCAP_full_release."""

    name = "iemocap"
    task = "classification"
    classes = list(IEMOCAP_CLASSES)
    source = IEMOCAP_SOURCE

    def __init__(self, valid_fraction: float = VALID_FRACTION) -> None:
        if not 0 <= valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
        self.valid_fraction = valid_fraction

    def check_root(self, root: Path) -> None:
        expected = []
        for session in SESSIONS:
            expected += [
                f"Session{session}/dialog/EmoEvaluation/",
                f"Session{session}/dialog/transcriptions/",
                f"Session{session}/dialog/avi/DivX/",
                f"Session{session}/sentences/wav/",
            ]
        layout = [
            "Session{1..5}/dialog/EmoEvaluation/<dialog>.txt",
            "Session{1..5}/dialog/transcriptions/<dialog>.txt",
            "Session{1..5}/dialog/avi/DivX/<dialog>.avi",
            "Session{1..5}/sentences/wav/<dialog>/<turn>.wav",
        ]
        require_paths(self.name, Path(root), expected, self.source, layout)

    def read(self, root: Path) -> list[Utterance]:
        dialogues = self._dialogues(Path(root))
        training = [name for name, session in dialogues.items() if session != TEST_SESSION]
        valid = valid_dialogues(sorted(training), self.valid_fraction)
        items: list[Utterance] = []
        for name, session in dialogues.items():
            split = "test" if session == TEST_SESSION else "valid" if name in valid else "train"
            items.extend(self._read_dialogue(Path(root), session, name, split))
        self._log_sizes(items)
        return items

    def _dialogues(self, root: Path) -> dict[str, int]:
        """Every dialogue with an EmoEvaluation file, mapped to its session number."""
        dialogues: dict[str, int] = {}
        for session in SESSIONS:
            folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
            for path in sorted(folder.glob("*.txt")):
                if not path.name.startswith("."):
                    dialogues[path.stem] = session
        return dialogues

    def _read_dialogue(self, root: Path, session: int, dialog: str, split: str) -> list[Utterance]:
        """The kept turns of one dialogue, in time order, with context from the whole transcript."""
        base = root / f"Session{session}"
        labelled = read_evaluation(base / "dialog" / "EmoEvaluation" / f"{dialog}.txt")
        transcript_path = base / "dialog" / "transcriptions" / f"{dialog}.txt"
        spoken = read_transcript(transcript_path) if transcript_path.is_file() else {}
        if not spoken:
            log.warning("%s: no transcription lines; texts of %s are empty",
                        transcript_path, dialog)
        for turn in labelled.values():
            if turn.id not in spoken:
                spoken[turn.id] = Turn(turn.id, turn.start, turn.end)
        timeline = sorted(spoken.values(), key=lambda t: (t.start, t.id))
        texts = [t.text for t in timeline]
        video = base / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
        items: list[Utterance] = []
        for index, turn in enumerate(timeline):
            label = labelled.get(turn.id)
            if label is None or label.emotion not in IEMOCAP_CODES:
                continue
            before, after = context_window(texts, index)
            items.append(Utterance(
                id=turn.id, split=split, label=IEMOCAP_CODES.index(label.emotion),
                labels={"emotion": label.emotion, "valence": label.vad[0],
                        "activation": label.vad[1], "dominance": label.vad[2]},
                text=turn.text, group=dialog, position=len(items),
                video=MediaRef(video, label.start, label.end),
                audio=MediaRef(base / "sentences" / "wav" / dialog / f"{turn.id}.wav"),
                context_before=before, context_after=after,
            ))
        return items

    def _log_sizes(self, items: list[Utterance]) -> None:
        for split in ("train", "valid", "test"):
            chosen = [u for u in items if u.split == split]
            log.info("iemocap %s: %d utterances in %d dialogues",
                     split, len(chosen), len({u.group for u in chosen}))
