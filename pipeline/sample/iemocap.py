"""A synthetic IEMOCAP: five sessions of dialogues, one video per dialogue, one wav per turn.

    Session{s}/dialog/EmoEvaluation/<dialog>.txt     summary line + annotator lines per turn
    Session{s}/dialog/transcriptions/<dialog>.txt    ``turn [start-end]: text`` lines
    Session{s}/dialog/avi/DivX/<dialog>.avi          MPEG-4 video + PCM audio of the dialogue
    Session{s}/sentences/wav/<dialog>/<turn>.wav     16 kHz mono PCM of each turn

Dialogues are improvised (``Ses01F_impro01``) or scripted (``Ses01M_script01_2``); turns count
per speaker (``_F000``, ``_M000``, ``_F001``). Each session spreads the six classes evenly and
adds the labels readers must drop (``xxx``, ``sur``, ``fea``, ``oth``). Between turns the
video shows a grey idle picture and the audio is silent; a turn's video is the
``[start, end]`` window of the dialogue video and its wav equals that window's audio.
Transcriptions also hold lines that are not utterances (a ``_MXX0``/``_FXX0`` backchannel
and a bare ``M: [BREATHING]`` note) that readers must skip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from hcm.pipeline.sample.common import check_distinct_faults, corpus_rng, light, split_sizes, stratified
from hcm.pipeline.sample.content import (
    EMOTION_AFFECT,
    IDLE_VIDEO,
    NoiseConfig,
    UtteranceContent,
    emotion_space,
    make_content,
)
from hcm.pipeline.sample.media import ClipSpec, write_avi, write_wav
from hcm.pipeline.sample.registry import (
    EMPTY_TEXT,
    MISSING_TRANSCRIPTION,
    MISSING_WAV,
    TRUNCATED_MEDIA,
    CorpusPlan,
    Fault,
    MediaJob,
    PlannedItem,
    SampleRequest,
    register_sample,
)
from hcm.pipeline.sample.render import n_samples, render_audio, render_video

SESSIONS = 5
TURNS_PER_DIALOGUE = 60  # about the real dialogues' length; a larger --n gets more dialogues, not longer ones
CLASSES = ("hap", "sad", "neu", "ang", "exc", "fru")  # the six that are used, in index order
EXCLUDED = ("xxx", "sur", "fea", "oth")  # labels the readers must drop
LABEL_CYCLE = CLASSES + CLASSES + EXCLUDED  # per session: each class twice, then one excluded each
EMOTION_OF = {"hap": "joy", "sad": "sadness", "neu": "neutral", "ang": "anger",
              "exc": "excited", "fru": "frustration", "xxx": "unclear", "sur": "surprise",
              "fea": "fear", "oth": "other"}
CATEGORY = {"hap": "Happiness", "sad": "Sadness", "neu": "Neutral", "ang": "Anger",
            "exc": "Excited", "fru": "Frustration", "sur": "Surprise", "fea": "Fear",
            "oth": "Other"}  # annotator vocabulary of the EmoEvaluation files
EVALUATORS = ("C-E1", "C-E2", "C-E4")
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
SPEC = ClipSpec(size=96, fps=10, sample_rate=16000)
WAV_TRUNCATED_BYTES = 30  # inside the 44-byte RIFF header: no decoder can read the file
SPACE = emotion_space(EMOTION_OF, CLASSES)
TEMPLATES = (
    "I'm {} about it.",
    "You know, it's just {}.",
    "Why would you say that? It's {}.",
    "Oh, that's {}, really {}.",
    "I don't know, I feel {}.",
    "Well it was {} and then {}, okay?",
    "Look, this is {}.",
)


@dataclass(frozen=True)
class Turn:
    turn_id: str
    label: str
    start: float  # seconds into the dialogue, 4 decimals
    end: float
    vad: tuple[float, float, float]  # valence, activation, dominance, 1..5
    content: UtteranceContent | None  # None in the light copies fault placement keeps


@dataclass(frozen=True)
class Dialogue:
    session: int
    name: str
    turns: tuple[Turn, ...]
    duration: float  # seconds of the dialogue recording

    @property
    def folder(self) -> str:
        return f"Session{self.session}"

    def wav_path(self, turn: Turn) -> str:
        return f"{self.folder}/sentences/wav/{self.name}/{turn.turn_id}.wav"

    @property
    def avi_path(self) -> str:
        return f"{self.folder}/dialog/avi/DivX/{self.name}.avi"


@register_sample("iemocap", default_n=80, min_n=10,
                 description="IEMOCAP: Session1-5 with EmoEvaluation, transcriptions, avi, wav",
                 bytes_per_item=241_000, seconds_per_item=0.04)
def plan_iemocap(request: SampleRequest) -> CorpusPlan:
    """The IEMOCAP sample: ``request.n`` turns over 5 sessions of dialogues (1-2 up to 600 turns)."""
    def dialogues() -> Iterator[Dialogue]:  # each call draws the same dialogues again
        return _plan_dialogues(request.n, corpus_rng(request.seed, "iemocap"))

    faults = _plan_faults([_light(d) for d in dialogues()]) if request.faults else []
    check_distinct_faults(faults, "iemocap", request.n)
    broken = {f.item: f.kind for f in faults}
    items = (_item(dialogue, broken) for dialogue in dialogues())
    return CorpusPlan({}, items, tuple(f"Session{s}" for s in range(1, SESSIONS + 1)), faults)


def _item(dialogue: Dialogue, broken: dict[str, str]) -> PlannedItem:
    """A dialogue: its EmoEvaluation and transcription files, its avi and its turns' wavs."""
    base = f"{dialogue.folder}/dialog"
    rows = ((f"{base}/EmoEvaluation/{dialogue.name}.txt", _evaluation(dialogue)),
            (f"{base}/transcriptions/{dialogue.name}.txt", _transcription(dialogue, broken)))
    return PlannedItem(dialogue.folder, rows, MediaJob(dialogue.avi_path, DialogueWriter(dialogue, broken)),
                       utterances=len(dialogue.turns))


def _light(dialogue: Dialogue) -> Dialogue:
    return replace(dialogue, turns=tuple(light(turn) for turn in dialogue.turns))


def _plan_dialogues(n: int, rng: np.random.Generator) -> Iterator[Dialogue]:
    """The dialogues, session by session, each drawn when it is reached."""
    per_session = 1 if n < 40 else max(2, math.ceil(n / (SESSIONS * TURNS_PER_DIALOGUE)))
    sizes = split_sizes(n, SESSIONS * per_session, rng, 6, 10)
    noise = NoiseConfig()
    for session in range(1, SESSIONS + 1):
        mine = sizes[(session - 1) * per_session:session * per_session]
        labels, first = stratified(LABEL_CYCLE, sum(mine), rng), 0
        for j, size in enumerate(mine):
            name = _dialogue_name(session, j)
            turn_labels, first = labels[first:first + size], first + size
            if not any(label in CLASSES for label in turn_labels):
                # Every dialogue keeps a labelled turn, so every split (Session 5 is test, the
                # validation split takes whole dialogues) holds items even at the smallest n.
                turn_labels[0] = CLASSES[(session + j) % len(CLASSES)]
            yield _plan_dialogue(session, name, turn_labels, noise, rng)


def _dialogue_name(session: int, index: int) -> str:
    """``Ses01F_impro01`` for even indices, ``Ses01M_script01_2`` for odd ones."""
    gender = "F" if index % 2 == 0 else "M"
    if index % 2 == 0:
        return f"Ses{session:02d}{gender}_impro{index // 2 + 1:02d}"
    return f"Ses{session:02d}{gender}_script{index // 2 + 1:02d}_{1 + session % 3}"


def _plan_dialogue(session: int, name: str, labels: list[str], noise: NoiseConfig,
                   rng: np.random.Generator) -> Dialogue:
    counters = {"F": 0, "M": 0}
    speaker = str(rng.choice(["F", "M"]))
    clock = float(rng.uniform(1.5, 4.0))
    turns = []
    for label in labels:
        start = round(clock, 4)
        end = round(start + float(rng.uniform(2.0, 4.0)), 4)
        clock = end + float(rng.uniform(0.3, 1.2))
        turns.append(Turn(
            turn_id=f"{name}_{speaker}{counters[speaker]:03d}", label=label, start=start,
            end=end, vad=_vad(label, rng),
            content=make_content(SPACE, label, TEMPLATES, noise, rng),
        ))
        counters[speaker] += 1
        if rng.random() > 0.2:  # mostly the speakers alternate
            speaker = "M" if speaker == "F" else "F"
    frames = math.ceil((clock + 1.0) * SPEC.fps)  # a second of idle tail, whole frames
    return Dialogue(session, name, tuple(turns), duration=frames / SPEC.fps)


def _vad(label: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """Averaged annotator ratings on 1..5 (half steps), following the label's affect."""
    affect = EMOTION_AFFECT[EMOTION_OF[label]]
    centre = np.array([affect.valence, affect.arousal, 0.25 + 0.5 * affect.arousal])
    ratings = np.clip(1.0 + 4.0 * centre + rng.normal(0.0, 0.3, 3), 1.0, 5.0)
    return tuple(float(x) for x in np.round(ratings * 2.0) / 2.0)


def _evaluation(dialogue: Dialogue) -> str:
    """The EmoEvaluation file: header, then per turn a summary line and annotator lines."""
    blocks = [HEADER]
    for turn in dialogue.turns:
        v, a, d = turn.vad
        lines = [f"[{turn.start:.4f} - {turn.end:.4f}]\t{turn.turn_id}\t{turn.label}\t"
                 f"[{v:.4f}, {a:.4f}, {d:.4f}]"]
        lines += [f"{who}:\t{category};\t()"
                  for who, category in zip(EVALUATORS, _categories(turn.label))]
        lines.append(f"A-E1:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()")
        blocks.append("\n".join(lines) + "\n\n")
    return "".join(blocks)


def _categories(label: str) -> tuple[str, str, str]:
    """Three annotators' words: two agree on the label; ``xxx`` means no two agree."""
    if label == "xxx":
        return ("Frustration", "Neutral", "Anger")
    other = "Neutral" if label != "neu" else "Frustration"
    return (CATEGORY[label], other, CATEGORY[label])


def _transcription(dialogue: Dialogue, broken: dict[str, str]) -> str:
    """Transcript lines in time order, with a backchannel and a note that are not utterances."""
    lines = []
    for index, turn in enumerate(dialogue.turns):
        kind = broken.get(turn.turn_id)
        if kind != MISSING_TRANSCRIPTION:
            text = "" if kind == EMPTY_TEXT else turn.content.text
            lines.append(f"{turn.turn_id} [{turn.start:08.4f}-{turn.end:08.4f}]: {text}")
        if index == 1:
            gap = turn.end + 0.1
            lines.append(f"{dialogue.name}_MXX0 [{gap:08.4f}-{gap + 0.4:08.4f}]: Mm-hmm.")
        if index == len(dialogue.turns) - 2:
            lines.append("M: [BREATHING]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DialogueWriter:
    """Render one dialogue and write its avi and its turns' wavs (a :class:`MediaJob`)."""

    dialogue: Dialogue
    broken: dict[str, str]  # turn id -> fault kind

    def __call__(self, root) -> None:
        rate, fps = SPEC.sample_rate, SPEC.fps
        frames = int(round(self.dialogue.duration * fps))
        video = np.broadcast_to(render_video(IDLE_VIDEO, 1, SPEC.size, 0),
                                (frames, SPEC.size, SPEC.size, 3)).copy()  # (T, H, W, 3)
        audio = np.zeros(n_samples(self.dialogue.duration, rate), dtype=np.float32)  # (n,)
        for turn in self.dialogue.turns:
            first, last = math.ceil(turn.start * fps), min(frames, math.ceil(turn.end * fps))
            seed = turn.content.render_seed
            video[first:last] = render_video(turn.content.video, last - first, SPEC.size, seed)
            samples = render_audio(turn.content.audio, turn.end - turn.start, rate, seed + 1)
            offset = int(round(turn.start * rate))
            audio[offset:offset + samples.size] = samples
            self._write_wav(root, turn, samples)
        write_avi(root / self.dialogue.avi_path, video, fps, audio, rate)

    def _write_wav(self, root, turn: Turn, samples: np.ndarray) -> None:
        kind = self.broken.get(turn.turn_id)
        if kind == MISSING_WAV:
            return
        path = root / self.dialogue.wav_path(turn)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, samples, SPEC.sample_rate)
        if kind == TRUNCATED_MEDIA:
            path.write_bytes(path.read_bytes()[:WAV_TRUNCATED_BYTES])


def _plan_faults(dialogues: list[Dialogue]) -> list[Fault]:
    """One fault per session 1-4, each on a turn whose label is one of the six classes."""
    plans = (
        (1, EMPTY_TEXT, "transcription line has no text after the colon"),
        (2, MISSING_WAV, "turn annotated, sentences wav not written"),
        (3, MISSING_TRANSCRIPTION, "turn annotated, no line in the transcription"),
        (4, TRUNCATED_MEDIA, f"wav cut to {WAV_TRUNCATED_BYTES} bytes; it does not decode"),
    )
    faults = []
    for session, kind, detail in plans:
        dialogue = next(d for d in dialogues if d.session == session)
        turn = next((t for t in dialogue.turns if t.label in CLASSES), dialogue.turns[0])
        if kind in (EMPTY_TEXT, MISSING_TRANSCRIPTION):
            path = f"{dialogue.folder}/dialog/transcriptions/{dialogue.name}.txt"
        else:
            path = dialogue.wav_path(turn)
        faults.append(Fault(kind, turn.turn_id, dialogue.folder, path, detail))
    return faults
