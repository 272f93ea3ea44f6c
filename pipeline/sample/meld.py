"""A synthetic MELD: ``{train,dev,test}_sent_emo.csv`` and one mp4 per utterance.

    train_sent_emo.csv   train_splits/dia{D}_utt{U}.mp4
    dev_sent_emo.csv     dev_splits_complete/dia{D}_utt{U}.mp4
    test_sent_emo.csv    output_repeated_splits_test/dia{D}_utt{U}.mp4

Each split holds dialogues of 3-9 utterances (``Dialogue_ID`` counts from 0 in every split,
as in the real archive) between two or three speakers. Emotions are spread evenly over each
split (neutral twice as often); the sentiment follows the emotion (surprise may be either
way). Texts use curly apostrophes and some rows carry the mojibake of the real CSVs
(``â€™``); ``StartTime``/``EndTime`` are ``hh:mm:ss,ms`` with one-digit hours in some rows,
and each clip lasts exactly ``EndTime - StartTime`` (to the frame).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hcm.pipeline.sample.common import (
    check_distinct_faults,
    corpus_rng,
    csv_line,
    light,
    split_sizes,
    stratified,
)
from hcm.pipeline.sample.content import NoiseConfig, UtteranceContent, emotion_space, make_content
from hcm.pipeline.sample.media import ClipSpec, clip_job
from hcm.pipeline.sample.registry import (
    EMPTY_TEXT,
    MISSING_CLIP,
    NO_AUDIO,
    TRUNCATED_MEDIA,
    CorpusPlan,
    Fault,
    PlannedItem,
    SampleRequest,
    register_sample,
)

COLUMNS = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
           "Utterance_ID", "Season", "Episode", "StartTime", "EndTime")
EMOTIONS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
SENTIMENT = {"neutral": "neutral", "joy": "positive", "fear": "negative", "sadness": "negative",
             "disgust": "negative", "anger": "negative"}  # surprise: positive or negative
SPLITS = {  # split name in counts -> (csv file, clip folder)
    "train": ("train_sent_emo.csv", "train_splits"),
    "valid": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
SPEAKERS = ("Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross")
UTTERANCES_PER_DIALOGUE = 6  # on average; each dialogue has 3-9
MOJIBAKE_SHARE = 0.15  # rows whose curly punctuation went through a cp1252 round trip
ONE_DIGIT_HOUR_SHARE = 0.3  # rows whose times read 0:mm:ss,ms instead of 00:mm:ss,ms
SPEC = ClipSpec(size=96, fps=10, sample_rate=16000)
SPACE = emotion_space({e: e for e in EMOTIONS}, EMOTIONS)
TEMPLATES = (
    "Oh my God, I’m so {}!",
    "Wait, you’re {} about this?",
    "It’s {}, it’s really {}.",
    "Okay, that’s {}.",
    "I just feel {} right now.",
    "Hey, this is {}, y’know?",
    "Are you kidding me? That’s {}!",
    "So… I guess it was kind of {} and {}.",
)


@dataclass(frozen=True)
class MeldUtterance:
    split: str
    dialogue: int
    utterance: int
    speaker: str
    emotion: str
    sentiment: str
    season: int
    episode: int
    start: float  # seconds into the episode, to the millisecond
    end: float
    content: UtteranceContent | None  # None in the light copies fault placement keeps
    mojibake: bool
    one_digit_hour: bool

    @property
    def clip_name(self) -> str:
        return f"dia{self.dialogue}_utt{self.utterance}"

    @property
    def item(self) -> str:
        """hcm's id: the archive's split name and clip name (clip names repeat across splits)."""
        return f"{SPLITS[self.split][0].split('_')[0]}_{self.clip_name}"

    @property
    def path(self) -> str:
        return f"{SPLITS[self.split][1]}/{self.clip_name}.mp4"


@register_sample("meld", default_n=160, min_n=3,
                 description="MELD: *_sent_emo.csv + one mp4 per utterance in three folders",
                 bytes_per_item=33_000, seconds_per_item=0.073)
def plan_meld(request: SampleRequest) -> CorpusPlan:
    """The MELD sample: ``request.n`` utterances, a third per split, in dialogues of 3-9."""
    per_split = {"train": request.n - 2 * (request.n // 3), "valid": request.n // 3,
                 "test": request.n // 3}

    def utterances() -> Iterator[MeldUtterance]:  # each call draws the same utterances again
        rng = corpus_rng(request.seed, "meld")
        for split, count in per_split.items():
            yield from _plan_split(split, count, rng)

    faults = _plan_faults([light(u) for u in utterances()]) if request.faults else []
    check_distinct_faults(faults, "meld", request.n)
    broken = {(f.split, f.item): f.kind for f in faults}
    headers = {csv_name: csv_line(COLUMNS) for csv_name, _ in SPLITS.values()}
    return CorpusPlan(headers, _items(utterances(), broken), tuple(per_split), faults)


def _items(utterances: Iterator[MeldUtterance], broken: dict[tuple[str, str], str]) -> Iterator[PlannedItem]:
    """Each utterance's row (``Sr No.`` counts from 1 in each file) and clip."""
    number = dict.fromkeys(SPLITS, 0)
    for u in utterances:
        kind = broken.get((u.split, u.item))
        number[u.split] += 1
        row = csv_line(_row(number[u.split], u, kind == EMPTY_TEXT))
        media = clip_job(u.path, u.content, u.end - u.start, SPEC, kind)
        yield PlannedItem(u.split, ((SPLITS[u.split][0], row),), media)


def _plan_split(split: str, count: int, rng: np.random.Generator) -> Iterator[MeldUtterance]:
    dialogues = max(1, int(round(count / UTTERANCES_PER_DIALOGUE)))
    sizes = split_sizes(count, dialogues, rng, 3, 9)
    emotions = iter(stratified(EMOTIONS + ("neutral",), count, rng))
    noise = NoiseConfig()
    for dialogue, size in enumerate(sizes):
        speakers = list(rng.choice(SPEAKERS, int(rng.integers(2, 4)), replace=False))
        season, episode = int(rng.integers(1, 11)), int(rng.integers(1, 25))
        clock = float(rng.uniform(30.0, 1300.0))
        for utterance in range(size):
            emotion = next(emotions)
            start = round(clock, 3)
            end = round(start + float(rng.uniform(2.0, 4.0)), 3)
            clock = end + float(rng.uniform(0.05, 1.0))
            yield MeldUtterance(
                split=split, dialogue=dialogue, utterance=utterance,
                speaker=str(speakers[utterance % len(speakers)]), emotion=emotion,
                sentiment=SENTIMENT.get(emotion) or str(rng.choice(["positive", "negative"])),
                season=season, episode=episode, start=start, end=end,
                content=make_content(SPACE, emotion, TEMPLATES, noise, rng),
                mojibake=bool(rng.random() < MOJIBAKE_SHARE),
                one_digit_hour=bool(rng.random() < ONE_DIGIT_HOUR_SHARE),
            )


def _row(number: int, u: MeldUtterance, empty_text: bool) -> list:
    text = "" if empty_text else u.content.text
    if u.mojibake:
        text = text.encode("utf-8").decode("cp1252", errors="replace")
    return [number, text, u.speaker, u.emotion, u.sentiment, u.dialogue, u.utterance, u.season,
            u.episode, _timestamp(u.start, u.one_digit_hour), _timestamp(u.end, u.one_digit_hour)]


def _timestamp(seconds: float, one_digit_hour: bool) -> str:
    """``hh:mm:ss,ms`` (``h:mm:ss,ms`` when ``one_digit_hour``)."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    hour = f"{hours:d}" if one_digit_hour else f"{hours:02d}"
    return f"{hour}:{minutes:02d}:{secs:02d},{ms:03d}"


def _plan_faults(utterances: list[MeldUtterance]) -> list[Fault]:
    """A dev clip missing (as in the real archive), a truncated train clip, a silent test clip
    and a train row with an empty utterance."""
    by_split = {s: [u for u in utterances if u.split == s] for s in SPLITS}
    train = by_split["train"]
    chosen = (
        (MISSING_CLIP, _middle(by_split["valid"]), "listed in dev_sent_emo.csv, no mp4 written"),
        (TRUNCATED_MEDIA, train[len(train) // 3], "mp4 cut to 40% of its bytes; it does not decode"),
        (NO_AUDIO, _middle(by_split["test"]), "mp4 with a video stream only"),
        (EMPTY_TEXT, train[(2 * len(train)) // 3], "Utterance column is empty"),
    )
    return [Fault(kind, u.item, u.split,
                  SPLITS[u.split][0] if kind == EMPTY_TEXT else u.path, detail)
            for kind, u, detail in chosen]


def _middle(items: list[MeldUtterance]) -> MeldUtterance:
    return items[len(items) // 2]
