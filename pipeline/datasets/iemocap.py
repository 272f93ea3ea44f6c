"""IEMOCAP (6 emotions, classification).

    <root>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt     labels, one summary line per turn
    <root>/Session{1..5}/dialog/transcriptions/<dialog>.txt    `turn_id [start-end]: text`
    <root>/Session{1..5}/dialog/avi/DivX/<dialog>.avi          one video per dialogue
    <root>/Session{1..5}/sentences/wav/<dialog>/<turn>.wav     one 16 kHz wav per turn

Labels come from the EmoEvaluation summary lines ``[start - end] turn emo [V, A, D]``
(annotator lines are ignored). Six classes are kept, in this index order: hap, sad, neu, ang,
exc, fru -> happy, sad, neutral, angry, excited, frustrated; turns with any other label (xxx,
sur, fea, dis, oth) are left out. ``labels`` keeps the code and the V/A/D ratings.

Every labelled turn is accounted for: a turn left out for its label, an unreadable summary line,
and each turn of a dialogue whose EmoEvaluation file is missing (turns known from its transcript
or wav folder) are rejected rows (``Utterance.dropped``) the extraction records as failures. A
labelled turn whose transcript file or line is missing is kept with a masked text and the reason.

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
    EXCLUDED_CLASS,
    INVALID_LABEL,
    MISSING_LABEL_FILE,
    DatasetAdapter,
    Utterance,
    context_window,
    read_lines,
    register_dataset,
    rejected_row,
    repair_note,
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
UTTERANCE_ID = re.compile(r"^Ses\d{2}[FM]_[^\s/\\]+_[FM]\d{3}$")  # a name, never a path
TURN_IN_LINE = re.compile(r"Ses\d{2}[FM]_[^\s/\\]+_[FM]\d{3}")
NO_TRANSCRIPT_FILE = "transcript file missing"
NO_TRANSCRIPT_LINE = "no transcript line"


@dataclass(frozen=True)
class Turn:
    """One line of an EmoEvaluation summary or of a transcription."""

    id: str
    start: float
    end: float
    text: str = ""
    emotion: str = ""
    vad: tuple[float | None, float | None, float | None] = (None, None, None)
    line: int = 0  # line number in its file
    repaired: bool = False  # the line held bytes that are not UTF-8 (replaced by U+FFFD)


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


def read_evaluation(path: Path, unreadable: list[tuple[int, str]] | None = None) -> dict[str, Turn]:
    """The summary lines of one EmoEvaluation file, by turn id.

    A line that starts like a summary line but cannot be read is logged and, when given,
    appended to ``unreadable`` as ``(line number, line)``.
    """
    turns: dict[str, Turn] = {}
    lines, _ = read_lines(path)
    for number, line in enumerate(lines, start=1):
        match = SUMMARY_LINE.match(line.strip())
        if match is None:
            if line.startswith("["):
                log.warning("%s line %d: unreadable summary line %r; skipped", path, number, line)
                if unreadable is not None:
                    unreadable.append((number, line))
            continue
        start, end, turn_id, emotion, vad = match.groups()
        turns[turn_id] = Turn(turn_id, float(start), float(end), emotion=emotion, vad=_vad(vad), line=number)
    return turns


def read_transcript(path: Path) -> dict[str, Turn]:
    """The utterance lines of one transcription, by turn id (other lines are skipped)."""
    turns: dict[str, Turn] = {}
    lines, repaired = read_lines(path)
    for number, line in enumerate(lines, start=1):
        match = TRANSCRIPT_LINE.match(line.strip())
        if match is None or UTTERANCE_ID.match(match.group(1)) is None:
            continue
        turn_id, start, end, text = match.groups()
        turns[turn_id] = Turn(turn_id, float(start), float(end), text=text.strip(), line=number,
                              repaired=number in repaired)
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
        """Every dialogue with an EmoEvaluation file, a transcription or a wav folder, mapped to its session.

        A dialogue missing some of these is still listed, so its turns are accounted for and the
        validation dialogues do not change with it.
        """
        dialogues: dict[str, int] = {}
        for session in SESSIONS:
            base = root / f"Session{session}"
            found = [*(base / "dialog" / "EmoEvaluation").glob("*.txt"),
                     *(base / "dialog" / "transcriptions").glob("*.txt")]
            names = {p.stem for p in found} | {p.name for p in (base / "sentences" / "wav").glob("*") if p.is_dir()}
            dialogues.update({name: session for name in sorted(names) if not name.startswith(".")})
        return dialogues

    def _read_dialogue(self, root: Path, session: int, dialog: str, split: str) -> list[Utterance]:
        """Every labelled turn of one dialogue, in time order, with context from the whole transcript."""
        base = root / f"Session{session}"
        label_path = base / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        transcript_path = base / "dialog" / "transcriptions" / f"{dialog}.txt"
        spoken = read_transcript(transcript_path) if transcript_path.is_file() else {}
        if not label_path.is_file():
            return self._unlabelled(base, dialog, split, spoken, label_path)
        unreadable: list[tuple[int, str]] = []
        labelled = read_evaluation(label_path, unreadable)
        if not spoken:
            log.warning("%s: no transcription lines; texts of %s are empty", transcript_path, dialog)
        timeline = sorted({**{t.id: Turn(t.id, t.start, t.end) for t in labelled.values()}, **spoken}.values(),
                          key=lambda t: (t.start, t.id))
        texts = [t.text for t in timeline]
        video = base / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
        items: list[Utterance] = []
        for index, turn in enumerate(timeline):
            label = labelled.get(turn.id)
            if label is None:
                continue
            if label.emotion not in IEMOCAP_CODES:
                items.append(rejected_row(turn.id, split, EXCLUDED_CLASS, f"{label_path} line {label.line}: label "
                                          f"{label.emotion!r} is not one of {list(IEMOCAP_CODES)}", dialog, len(items)))
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
                notes=repair_note(transcript_path, [turn.line] if turn.repaired else []),
                masked=self._text_problem(turn.id, spoken, transcript_path),
            ))
        return _numbered(items) + [self._unreadable(label_path, number, line, split, dialog)
                                   for number, line in unreadable]

    @staticmethod
    def _text_problem(turn_id: str, spoken: dict[str, Turn], path: Path) -> dict[str, tuple[str, str]]:
        """``{"text": (reason, detail)}`` when the turn's transcript file or line is missing, else ``{}``."""
        if not path.is_file():
            return {"text": (NO_TRANSCRIPT_FILE, f"{path} does not exist")}
        if turn_id not in spoken:
            return {"text": (NO_TRANSCRIPT_LINE, f"{path} has no line for {turn_id}")}
        return {}

    @staticmethod
    def _unreadable(path: Path, number: int, line: str, split: str, dialog: str) -> Utterance:
        found = TURN_IN_LINE.search(line)
        return rejected_row(found.group(0) if found else f"{path.name}:{number}", split, INVALID_LABEL,
                            f"{path} line {number}: unreadable summary line {line.strip()!r}", dialog, 1 << 30)

    @staticmethod
    def _unlabelled(base: Path, dialog: str, split: str, spoken: dict[str, Turn], label_path: Path) -> list[Utterance]:
        """A dialogue without EmoEvaluation file: each turn its transcript or wav folder knows, rejected."""
        turns = sorted(spoken) or sorted(p.stem for p in (base / "sentences" / "wav" / dialog).glob("*.wav"))
        if not turns:
            log.warning("%s is missing and no transcript or wav names the turns of %s", label_path, dialog)
        return [rejected_row(turn, split, MISSING_LABEL_FILE, f"{label_path} does not exist", dialog, position)
                for position, turn in enumerate(turns)]

    def _log_sizes(self, items: list[Utterance]) -> None:
        for split in ("train", "valid", "test"):
            chosen = [u for u in items if u.split == split and u.dropped is None]
            left_out = sum(u.split == split and u.dropped is not None for u in items)
            log.info("iemocap %s: %d utterances in %d dialogues", split, len(chosen), len({u.group for u in chosen}))
            if left_out:
                log.info("iemocap %s: %d labelled turns left out (recorded as failures)", split, left_out)


def _numbered(items: list[Utterance]) -> list[Utterance]:
    """Position the kept turns 0, 1, ... in time order (rejected turns keep the position they sort at)."""
    kept = [u for u in items if u.dropped is None]
    for position, utterance in enumerate(kept):
        utterance.position = position
    return items
