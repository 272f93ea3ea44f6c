"""A synthetic CMU-MOSEI in the MMSA layout: ``label.csv`` and ``Raw/<video_id>/<clip_id>.mp4``.

Videos hold several clips (the text context); clips of one video share a split and lean to
the video's mean sentiment. Splits are assigned by video, stratified by that mean, so each
split covers negative, neutral and positive scores. Ids include the traps real archives have:
numeric-looking video ids (``0188343`` with a leading zero, ``211875``, the float-looking
``4e2103``), YouTube-style ids starting with ``-``, a video with more than ten clips (``10``
sorts before ``2`` as text) and a video whose clip ids skip a number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hcm.core.names import SPLITS
from hcm.pipeline.datasets.splits import assign_by_group
from hcm.pipeline.sample.common import (
    annotation,
    check_distinct_faults,
    corpus_rng,
    csv_line,
    light,
    score_text,
    split_sizes,
)
from hcm.pipeline.sample.content import (
    SENTIMENT_LEXICON,
    NoiseConfig,
    ScoreSpace,
    UtteranceContent,
    make_content,
)
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

COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V",
           "annotation", "mode")
SPLIT_SHARES = {"train": 0.5, "valid": 0.25, "test": 0.25}  # of clips; assigned by video
SPECIAL_VIDEO_IDS = ("0188343", "211875", "4e2103")  # one per split
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
LONG_VIDEO_CLIPS = 12  # the first video, when n allows: clip ids 0..11
UNIMODAL_SHARE = 0.7  # rows with label_T/A/V filled; the others leave them empty
ZERO_SHARE = 0.12  # clips labelled exactly 0 (Acc-2 "non0" drops them)
SPEC = ClipSpec(size=96, fps=10, sample_rate=16000)
SPACE = ScoreSpace(SENTIMENT_LEXICON)
# Short sentences in which cue words are a third to a half of the words: a model pools the
# utterance's tokens, and filler words dilute what the cue words say.
TEMPLATES = (
    "the movie was {} and {}",
    "{} story, {} ending",
    "honestly {}, really {}",
    "the music was {}, the cast {}, the script {}",
    "it is {} you know",
    "{} product, {} price",
    "my impression: {} and {}",
    "basically {}, kind of {}",
)


@dataclass(frozen=True)
class MoseiClip:
    video_id: str
    clip_id: str
    mode: str
    label: float
    content: UtteranceContent | None  # None in the light copies fault placement keeps
    duration: float
    unimodal: bool  # label_T/A/V filled

    @property
    def item(self) -> str:
        return f"{self.video_id}$_${self.clip_id}"

    @property
    def path(self) -> str:
        return f"Raw/{self.video_id}/{self.clip_id}.mp4"


@register_sample("mosei", default_n=120, min_n=6,
                 description="CMU-MOSEI, MMSA layout: label.csv + Raw/<video_id>/<clip_id>.mp4",
                 bytes_per_item=34_000, seconds_per_item=0.062)
def plan_mosei(request: SampleRequest) -> CorpusPlan:
    """The MOSEI sample: ``request.n`` clips over videos of 3-6 clips (one of 12)."""
    def clips() -> Iterator[MoseiClip]:  # each call draws the same clips again
        return _plan_clips(request.n, corpus_rng(request.seed, "mosei"))

    faults = _plan_faults([light(clip) for clip in clips()]) if request.faults else []
    check_distinct_faults(faults, "mosei", request.n)
    broken = {fault.item: fault.kind for fault in faults}
    items = (_item(clip, broken.get(clip.item)) for clip in clips())
    return CorpusPlan({"label.csv": csv_line(COLUMNS)}, items, tuple(SPLITS), faults)


def _item(clip: MoseiClip, kind: str | None) -> PlannedItem:
    row = csv_line(_row(clip, empty_text=kind == EMPTY_TEXT))
    return PlannedItem(clip.mode, (("label.csv", row),), clip_job(clip.path, clip.content, clip.duration, SPEC, kind))


def _plan_clips(n: int, rng: np.random.Generator) -> Iterator[MoseiClip]:
    """The clips, drawn one at a time after the videos' sizes, splits and ids."""
    sizes = _video_sizes(n, rng)
    means = np.linspace(-2.2, 2.2, len(sizes))  # sorted, so the split cycle stratifies them
    modes = assign_by_group(sizes, SPLIT_SHARES)
    ids = _video_ids(modes, rng)
    noise = NoiseConfig()
    order = [int(v) for v in rng.permutation(len(sizes))]
    gap_video = next((v for v in order[1:] if sizes[v] >= 4), None)
    for v in order:
        for clip_id in _clip_ids(sizes[v], skip_one=v == gap_video):
            label = _label(means[v], rng)
            yield MoseiClip(
                video_id=ids[v], clip_id=clip_id, mode=modes[v], label=label,
                content=make_content(SPACE, label, TEMPLATES, noise, rng),
                duration=round(float(rng.uniform(2.0, 4.0)), 1),
                unimodal=bool(rng.random() < UNIMODAL_SHARE),
            )


def _video_sizes(n: int, rng: np.random.Generator) -> list[int]:
    """Clips per video: one long video when n allows, the rest 3-6 clips, at least 3 videos."""
    long_video = [LONG_VIDEO_CLIPS] if n >= 4 * LONG_VIDEO_CLIPS else []
    rest = n - sum(long_video)
    videos = max(3 - len(long_video), int(round(rest / 4.5)))
    return long_video + split_sizes(rest, videos, rng, 3, 6)


def _video_ids(modes: list[str], rng: np.random.Generator) -> list[str]:
    """YouTube-style ids; the first video of each split gets a numeric-looking special id."""
    ids = ["".join(rng.choice(list(ID_ALPHABET), 11)) for _ in modes]
    ids = [("-" + i[1:]) if k % 7 == 3 else i for k, i in enumerate(ids)]
    for special, mode in zip(SPECIAL_VIDEO_IDS, SPLITS):
        ids[modes.index(mode)] = special
    return ids


def _clip_ids(size: int, skip_one: bool) -> list[str]:
    """Clip ids count from 0; ``skip_one`` leaves out id 2, as some real videos do."""
    if not skip_one:
        return [str(i) for i in range(size)]
    return [str(i) for i in range(size + 1) if i != 2]


def _label(mean: float, rng: np.random.Generator) -> float:
    """A score in [-3, 3] on the 1/3 grid of averaged annotations, sometimes exactly 0."""
    if rng.random() < ZERO_SHARE:
        return 0.0
    return float(np.clip(np.round((mean + rng.normal(0.0, 0.8)) * 3.0) / 3.0, -3.0, 3.0))


def _row(clip: MoseiClip, empty_text: bool) -> list[str]:
    shown = clip.content.shown
    unimodal = [score_text(_thirds(shown[m])) if clip.unimodal else ""
                for m in ("text", "audio", "video")]
    return [clip.video_id, clip.clip_id, "" if empty_text else clip.content.text,
            score_text(clip.label), *unimodal, annotation(clip.label), clip.mode]


def _thirds(score: float) -> float:
    return float(np.round(score * 3.0) / 3.0)


def _plan_faults(clips: list[MoseiClip]) -> list[Fault]:
    """A valid clip whose file is missing; a silent, a truncated and an untranscribed train clip."""
    valid = [c for c in clips if c.mode == "valid"]
    train = [c for c in clips if c.mode == "train"]
    missing = valid[len(valid) // 2]
    pool = train if len(train) >= 3 else [c for c in clips if c is not missing]
    chosen = [(MISSING_CLIP, missing, "listed in label.csv, no mp4 written")]
    details = ((NO_AUDIO, "mp4 with a video stream only"),
               (TRUNCATED_MEDIA, "mp4 cut to 40% of its bytes; it does not decode"),
               (EMPTY_TEXT, "text column is empty"))
    for k, (kind, detail) in enumerate(details, start=1):
        chosen.append((kind, pool[k * len(pool) // 4], detail))
    return [Fault(kind, clip.item, clip.mode, clip.path if kind != EMPTY_TEXT else "label.csv",
                  detail) for kind, clip, detail in chosen]
