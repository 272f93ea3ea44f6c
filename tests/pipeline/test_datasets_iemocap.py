"""The IEMOCAP adapter on EmoEvaluation and transcription files written here."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pytest

from hcm.pipeline.datasets import DatasetRootError, get_dataset
from hcm.pipeline.datasets.iemocap import TURN_IN_LINE, UTTERANCE_ID, IemocapAdapter, read_evaluation, valid_dialogues

# (turn suffix, start, end, emotion, text); the emotions cycle through kept and excluded codes
TURNS = [
    ("F000", 6.29, 8.24, "neu", "Excuse me."),
    ("M000", 8.50, 10.10, "xxx", "Do you have your forms?"),
    ("F001", 10.01, 11.35, "fru", "Yeah."),
    ("M001", 11.60, 14.00, "hap", "Let me see them."),
    ("F002", 14.20, 16.00, "sur", "Is there a problem?"),
    ("M002", 16.30, 19.00, "exc", "Who told you to get in this line?"),
]


FOLDERS = ("dialog/EmoEvaluation", "dialog/transcriptions", "dialog/avi/DivX", "sentences/wav")


def _dialogues(session: int) -> list[str]:
    return [f"Ses0{session}F_impro0{k}" for k in (1, 2)] + [f"Ses0{session}M_script01_1"]


def _evaluation(dialog: str) -> str:
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for suffix, start, end, emotion, _ in TURNS:
        lines += [
            f"[{start:.4f} - {end:.4f}]\t{dialog}_{suffix}\t{emotion}\t[2.5000, 3.0000, 3.5000]",
            "C-E1:\tNeutral state;\t()",
            "A-E2:\tval 3; act 2; dom  3;\t()",
            "",
        ]
    return "\n".join(lines)


def _transcript(dialog: str) -> str:
    lines = [
        f"{dialog}_{suffix} [{start:08.4f}-{end:08.4f}]: {text}"
        for suffix, start, end, _, text in TURNS
    ]
    lines.insert(2, f"{dialog}_MXX0 [009.0000-009.5000]: [BREATHING]")
    lines.append("M: [LAUGHTER]")
    return "\n".join(lines) + "\n"


def write_iemocap(root: Path) -> Path:
    for session in range(1, 6):
        base = root / f"Session{session}"
        for folder in FOLDERS:
            (base / folder).mkdir(parents=True)
        (base / "dialog" / "EmoEvaluation" / "Categorical").mkdir()
        for dialog in _dialogues(session):
            (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(_evaluation(dialog))
            (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(_transcript(dialog))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_iemocap(tmp_path_factory.mktemp("iemocap"))


def test_classes_and_excluded_labels(corpus: Path) -> None:
    adapter = get_dataset("iemocap")
    assert adapter.classes == ["happy", "sad", "neutral", "angry", "excited", "frustrated"]
    items = adapter.utterances(corpus)
    assert len(items) == 15 * 4  # 15 dialogues, 4 kept turns each (xxx and sur are left out)
    first = [u for u in items if u.group == "Ses01F_impro01"]
    assert [u.id.rsplit("_", 1)[1] for u in first] == ["F000", "F001", "M001", "M002"]
    assert [u.label for u in first] == [2, 5, 0, 4]
    assert [u.position for u in first] == [0, 1, 2, 3]
    assert first[0].labels == {
        "emotion": "neu", "valence": 2.5, "activation": 3.0, "dominance": 3.5,
    }


def test_media_refs_cut_the_dialogue_video(corpus: Path) -> None:
    items = get_dataset("iemocap").utterances(corpus)
    item = next(u for u in items if u.id == "Ses02F_impro02_M001")
    assert item.video.path == corpus / "Session2" / "dialog" / "avi" / "DivX" / "Ses02F_impro02.avi"
    assert (item.video.start, item.video.end) == (11.6, 14.0)
    wavs = corpus / "Session2" / "sentences" / "wav"
    assert item.audio.path == wavs / "Ses02F_impro02" / "Ses02F_impro02_M001.wav"
    assert item.audio.start is None and item.audio.end is None


def test_context_comes_from_the_whole_transcript(corpus: Path) -> None:
    items = {u.id: u for u in get_dataset("iemocap").utterances(corpus)}
    fru = items["Ses01F_impro01_F001"]
    assert fru.text == "Yeah."
    # the excluded xxx turn is context; the MXX0 breathing line is not an utterance
    assert fru.context_before == ["Excuse me.", "Do you have your forms?"]
    assert fru.context_after == ["Let me see them.", "Is there a problem?"]
    assert items["Ses01F_impro01_M002"].context_after == []


def test_session5_is_test_and_validation_is_whole_dialogues(
    corpus: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        items = IemocapAdapter(valid_fraction=0.25).utterances(corpus)
    splits_of = defaultdict(set)
    for u in items:
        splits_of[u.group].add(u.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {g for g, s in splits_of.items() if s == {"test"}} == set(_dialogues(5))
    valid = {g for g, s in splits_of.items() if s == {"valid"}}
    assert len(valid) == 3 and not any(g.startswith("Ses05") for g in valid)  # round(0.25 * 12)
    order = ["train", "valid", "test"]
    assert [u.split for u in items] == sorted((u.split for u in items), key=order.index)
    messages = [r.getMessage() for r in caplog.records]
    assert "iemocap valid: 12 utterances in 3 dialogues" in messages


def test_validation_choice_is_deterministic() -> None:
    names = [f"Ses0{s}F_impro0{k}" for s in range(1, 5) for k in range(1, 8)]
    chosen = valid_dialogues(names, 0.1)
    assert len(chosen) == 3 and chosen == valid_dialogues(list(reversed(names)), 0.1)
    assert valid_dialogues(names, 0.0) == set()
    assert chosen <= valid_dialogues(names, 0.3)


def test_unreadable_summary_lines_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text(
        "[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[2, 3, 4]\n[oops]\tSes01F_impro01_F001\n"
    )
    with caplog.at_level(logging.WARNING):
        turns = read_evaluation(path)
    assert list(turns) == ["Ses01F_impro01_F000"]
    assert any("line 2" in r.getMessage() for r in caplog.records)


def test_root_error_lists_the_missing_sessions(tmp_path: Path) -> None:
    (tmp_path / "Session1" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    with pytest.raises(DatasetRootError) as caught:
        get_dataset("iemocap").utterances(tmp_path)
    message = str(caught.value)
    assert "Session{1..5}/dialog/EmoEvaluation/<dialog>.txt" in message
    assert "Session1/dialog/transcriptions/" in message and "Session5/" in message
    assert "sail.usc.edu" in message


def test_every_labelled_turn_is_kept_or_rejected_with_its_reason(tmp_path: Path) -> None:
    from hcm.pipeline.datasets.base import EXCLUDED_CLASS, INVALID_LABEL, MISSING_LABEL_FILE
    from hcm.pipeline.datasets.iemocap import NO_TRANSCRIPT_FILE

    root = write_iemocap(tmp_path)
    complete = {u.id: u.split for u in get_dataset("iemocap").utterances(root, rejected=True)}
    (root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").unlink()
    (root / "Session2" / "dialog" / "transcriptions" / "Ses02F_impro01.txt").unlink()
    evaluation = root / "Session4" / "dialog" / "EmoEvaluation" / "Ses04F_impro01.txt"
    evaluation.write_text(evaluation.read_text() + "[oops]\tSes04F_impro01_F009\n")
    transcript = root / "Session3" / "dialog" / "transcriptions" / "Ses03F_impro01.txt"
    transcript.write_bytes(transcript.read_bytes().replace(b"Yeah.", b"Yeah\xff."))
    rows = get_dataset("iemocap").utterances(root, rejected=True)
    kept = {u.id: u for u in rows if u.dropped is None}
    dropped = {u.id: u for u in rows if u.dropped is not None}
    assert len(kept) == 14 * 4 and len(dropped) == 6 + 14 * 2 + 1  # every summary line accounted for
    missing = [u for u in dropped.values() if u.group == "Ses01F_impro01"]
    assert len(missing) == 6 and all(u.dropped[0] == MISSING_LABEL_FILE for u in missing)
    assert all(u.split == complete[u.id] for u in missing)  # the validation dialogues did not change
    assert sum(u.dropped[0] == EXCLUDED_CLASS for u in dropped.values()) == 28
    assert dropped["Ses04F_impro01_F009"].dropped[0] == INVALID_LABEL
    no_text = [u for u in kept.values() if u.group == "Ses02F_impro01"]
    assert len(no_text) == 4 and all(u.text == "" and u.masked["text"][0] == NO_TRANSCRIPT_FILE for u in no_text)
    repaired = kept["Ses03F_impro01_F001"]
    assert repaired.text == "Yeah\ufffd." and "line 4" in repaired.notes["text_repair"]
    assert not any("text_repair" in u.notes for u in kept.values() if u is not repaired)
    assert [u.id for u in get_dataset("iemocap").utterances(root)] == [u.id for u in rows if u.dropped is None]


@pytest.mark.parametrize("turn, plain", [("Ses01F_impro01_F000", True), ("Ses01F_script01_1_M012", True),
                                         ("Ses01F_/../../x_F000", False), ("Ses01F_a\\b_F000", False)])
def test_turn_ids_are_names_never_paths(turn: str, plain: bool) -> None:
    """A turn id becomes part of the wav path; one with a separator is not read as a turn."""
    assert bool(UTTERANCE_ID.match(turn)) is plain and bool(TURN_IN_LINE.fullmatch(turn)) is plain
