"""The IEMOCAP sample: EmoEvaluation and transcription line formats, one avi per dialogue, wavs."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from hcm.pipeline.sample import make_sample
from hcm.pipeline.sample.iemocap import CLASSES, EXCLUDED

SUMMARY = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0[1-5][FM]_\w+?_[FM]\d{3})\t(\w{3})\t"
                     r"\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$")
ANNOTATOR = re.compile(r"^[CA]-E\d:\t.*;\t\(.*\)$")
TRANSCRIPT = re.compile(r"^(\S+) \[(\d{3}\.\d{4})-(\d{3}\.\d{4})\]: (.*)$")


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The corpus root and, per turn id, its dialogue, times and label from EmoEvaluation."""
    root = tmp_path_factory.mktemp("iemocap") / "sample-iemocap"
    make_sample("iemocap", root, n=40, seed=0, progress=False)
    turns = {}
    for path in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
        for line in lines[1:]:
            match = SUMMARY.match(line)
            if match:
                turn = match.group(3)
                assert turn.startswith(path.stem + "_")
                turns[turn] = {"dialog": path.stem, "session": path.parts[-4],
                               "start": float(match.group(1)), "end": float(match.group(2)),
                               "label": match.group(4)}
            else:
                assert line == "" or ANNOTATOR.match(line), line
    return root, turns


def test_sessions_dialogues_and_labels(iemocap):
    root, turns = iemocap
    assert len(turns) == 40
    assert {t["session"] for t in turns.values()} == {f"Session{s}" for s in range(1, 6)}
    labels = {t["label"] for t in turns.values()}
    assert labels <= set(CLASSES + EXCLUDED) and labels & set(EXCLUDED)
    assert set(CLASSES) <= {t["label"] for t in turns.values() if t["session"] != "Session5"}
    names = {t["dialog"] for t in turns.values()}
    assert any("_impro" in n for n in names) and any("_script" in n for n in names)
    for t in turns.values():
        assert 2.0 <= t["end"] - t["start"] <= 4.0


def test_transcriptions_list_every_turn_and_some_non_utterances(iemocap):
    root, turns = iemocap
    listed, others = set(), []
    for path in root.glob("Session*/dialog/transcriptions/*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = TRANSCRIPT.match(line)
            if match and match.group(1) in turns:
                turn = turns[match.group(1)]
                assert (float(match.group(2)), float(match.group(3))) == (turn["start"], turn["end"])
                assert match.group(4).strip()
                listed.add(match.group(1))
            else:
                others.append(line)
    assert listed == set(turns)
    assert any("XX" in line for line in others) and any(line.startswith("M:") for line in others)


def test_wavs_match_their_turns_and_the_dialogue_avi(iemocap):
    root, turns = iemocap
    for turn_id, turn in turns.items():
        wav = root / turn["session"] / "sentences" / "wav" / turn["dialog"] / f"{turn_id}.wav"
        samples, rate = soundfile.read(str(wav), dtype="float32")
        assert rate == 16000 and samples.ndim == 1
        assert abs(samples.size / rate - (turn["end"] - turn["start"])) < 1e-3
    for dialog in {t["dialog"] for t in turns.values()}:
        mine = {k: t for k, t in turns.items() if t["dialog"] == dialog}
        avi = root / next(iter(mine.values()))["session"] / "dialog/avi/DivX" / f"{dialog}.avi"
        with av.open(str(avi)) as container:
            duration = sum(1 for _ in container.decode(video=0)) / 10
        with av.open(str(avi)) as container:
            track = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        assert duration >= max(t["end"] for t in mine.values())
        turn_id, turn = next(iter(mine.items()))  # the avi's audio holds the turn's wav
        wav, _ = soundfile.read(str(avi.parents[3] / "sentences/wav" / dialog / f"{turn_id}.wav"),
                                dtype="int16")
        offset = int(round(turn["start"] * 16000))
        assert np.array_equal(track[offset:offset + wav.size], wav)


def test_video_shows_each_turn_between_its_start_and_end(iemocap):
    root, turns = iemocap
    turn_id, turn = next(iter(turns.items()))
    avi = root / turn["session"] / "dialog/avi/DivX" / f"{turn['dialog']}.avi"
    with av.open(str(avi)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    saturation = frames.max(axis=-1).astype(float) - frames.min(axis=-1)  # (T, H, W)
    per_frame = saturation.mean(axis=(1, 2))
    inside = per_frame[int(np.ceil(turn["start"] * 10)):int(turn["end"] * 10)]
    assert per_frame[0] < 10 < inside.min()  # grey idle before the first turn, colour during it
