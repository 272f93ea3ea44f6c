"""Synthetic corpora in the MMSA layout beyond CMU-MOSEI: CMU-MOSI, CH-SIMS, CH-SIMS v2 and a
corpus of one's own (``custom``).

Each is planned like the MOSEI sample (videos of 3-6 clips whose clips lean to the video's mean
label, splits assigned by video and stratified by that mean) with the traits of the real one:

- ``mosi``: English opinion segments, YouTube-style video ids, clip ids counted from 1, scores
  in [-3, 3] on the 0.2 grid of five averaged annotations;
- ``sims`` / ``simsv2``: Chinese transcripts, ids ``video_0001``/``0001`` (v2: five letters and
  digits then ``_0001``, clip ids from ``00000``), scores in [-1, 1] on the 0.2 grid, unimodal
  labels on every row, as CH-SIMS has;
- ``custom``: what a user writes for their own clips: ``video_id, clip_id, text, label`` and no
  ``mode`` column (hcm makes the split), emotion names as labels, clips as mp4, avi and
  audio-only wav.

``--faults`` adds a missing clip, a clip without audio, a truncated file and an empty transcript.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

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
    stratified,
)
from hcm.pipeline.sample.content import (
    SENTIMENT_LEXICON,
    NoiseConfig,
    ScoreSpace,
    UtteranceContent,
    emotion_space,
    make_content,
)
from hcm.pipeline.sample.media import ClipSpec, clip_job
from hcm.pipeline.sample.mosei import ID_ALPHABET, SPLIT_SHARES, _video_sizes
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

SPEC = ClipSpec(size=96, fps=10, sample_rate=16000)
MMSA_COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")
CUSTOM_COLUMNS = ("video_id", "clip_id", "text", "label")

MOSI_TEMPLATES = (
    "i thought it was {} and {}",
    "the acting was {}, the plot {}",
    "um it was just {} you know",
    "overall a {} movie with {} scenes",
    "i mean the ending was {}",
    "{} characters and a {} soundtrack",
)
# Chinese cue words per score bucket (score * 3 rounded, as for the English lexicon)
CHINESE_LEXICON = {
    3: ("精彩", "完美"), 2: ("喜欢", "开心"), 1: ("不错", "还好"), 0: ("一般", "普通"),
    -1: ("无聊", "平淡"), -2: ("失望", "难过"), -3: ("糟糕", "讨厌"),
}
CHINESE_TEMPLATES = (
    "这部电影{}，结局{}",
    "说实话{}，真的{}",
    "我觉得挺{}的",
    "音乐{}，演员{}，剧本{}",
    "{}的故事，{}的画面",
    "他今天{}，也很{}",
)
CUSTOM_CLASSES = {"angry": "anger", "happy": "joy", "neutral": "neutral", "sad": "sadness"}
CUSTOM_TEMPLATES = ("i feel {} about it", "that was {} and {}", "honestly {}", "it makes me {}, so {}")
CUSTOM_SUFFIXES = (".mp4",) * 6 + (".avi", ".wav")  # most clips mp4, some avi, some audio only


@dataclass(frozen=True)
class ScaledScoreSpace(ScoreSpace):
    """Scores in [low, high] whose cue words come from the buckets of ``score * buckets`` rounded."""

    buckets: float = 1.0

    def word(self, shown: float, rng: np.random.Generator) -> str:
        return str(rng.choice(self.lexicon[int(round(shown * self.buckets))]))


@dataclass(frozen=True)
class Style:
    """What tells one corpus from another."""

    name: str
    space: object  # the LabelSpace
    templates: tuple[str, ...]
    noise: NoiseConfig
    grid: float  # labels are multiples of it
    ids: str  # "youtube", "sims", "simsv2", "custom"


SCORE_NOISE_1 = NoiseConfig(text_sigma=0.17, audio_sigma=0.4, video_sigma=0.4)  # [-1, 1]: a third of [-3, 3]'s
STYLES = {
    "mosi": Style("mosi", ScoreSpace(SENTIMENT_LEXICON), MOSI_TEMPLATES, NoiseConfig(), 0.2, "youtube"),
    "sims": Style("sims", ScaledScoreSpace(CHINESE_LEXICON, -1.0, 1.0, 3.0), CHINESE_TEMPLATES, SCORE_NOISE_1,
                  0.2, "sims"),
    "simsv2": Style("simsv2", ScaledScoreSpace(CHINESE_LEXICON, -1.0, 1.0, 3.0), CHINESE_TEMPLATES, SCORE_NOISE_1,
                    0.2, "simsv2"),
}


@dataclass(frozen=True)
class Clip:
    video_id: str
    clip_id: str
    mode: str
    label: float | str
    content: UtteranceContent | None  # None in the light copies fault placement keeps
    duration: float
    suffix: str = ".mp4"

    @property
    def item(self) -> str:
        return f"{self.video_id}$_${self.clip_id}"

    @property
    def path(self) -> str:
        return f"Raw/{self.video_id}/{self.clip_id}{self.suffix}"


def _video_ids(style: str, count: int, rng: np.random.Generator) -> list[str]:
    if style == "youtube":
        ids = ["".join(rng.choice(list(ID_ALPHABET), 11)) for _ in range(count)]
        return [("-" + i[1:]) if k % 5 == 2 else i for k, i in enumerate(ids)]
    if style == "sims":
        return [f"video_{k:04d}" for k in sorted(rng.choice(np.arange(1, 10 * count + 1), count, replace=False))]
    if style == "simsv2":
        letters = "abcdefghijklmnopqrstuvwxyz0123456789"
        return ["".join(rng.choice(list(letters), 5)) + f"_{k:04d}" for k in range(1, count + 1)]
    return [f"interview_{k:02d}" for k in range(1, count + 1)]


def _clip_ids(style: str, size: int) -> list[str]:
    if style == "sims":
        return [f"{k:04d}" for k in range(1, size + 1)]
    if style == "simsv2":
        return [f"{k:05d}" for k in range(size)]
    if style == "custom":
        return [f"{k:02d}" for k in range(1, size + 1)]
    return [str(k) for k in range(1, size + 1)]  # CMU-MOSI counts segments from 1


def _plan_scores(style: Style, n: int, rng: np.random.Generator) -> Iterator[Clip]:
    """Videos of 3-6 clips leaning to the video's mean score; splits by video; clips drawn one at a time."""
    sizes = _video_sizes(n, rng)
    high = style.space.high
    means = np.linspace(-0.73 * high, 0.73 * high, len(sizes))  # sorted, so the split cycle stratifies them
    modes = assign_by_group(sizes, SPLIT_SHARES)
    ids = _video_ids(style.ids, len(sizes), rng)
    for v in (int(v) for v in rng.permutation(len(sizes))):
        for clip_id in _clip_ids(style.ids, sizes[v]):
            score = float(np.clip(np.round((means[v] + rng.normal(0.0, 0.27 * high)) / style.grid) * style.grid,
                                  -high, high)) + 0.0
            yield Clip(ids[v], clip_id, modes[v], round(score, 4),
                       make_content(style.space, score, style.templates, style.noise, rng),
                       round(float(rng.uniform(2.0, 4.0)), 1))


def _plan_custom(n: int, rng: np.random.Generator) -> Iterator[Clip]:
    """Videos of 3-6 clips with emotion names, balanced over the classes; no split (hcm makes one)."""
    space = emotion_space(CUSTOM_CLASSES, tuple(CUSTOM_CLASSES))
    sizes = _video_sizes(n, rng)
    labels = stratified(sorted(CUSTOM_CLASSES), n, rng)
    ids = _video_ids("custom", len(sizes), rng)
    k = 0
    for v, size in enumerate(sizes):
        for clip_id in _clip_ids("custom", size):
            suffix = CUSTOM_SUFFIXES[int(rng.integers(len(CUSTOM_SUFFIXES)))]
            yield Clip(ids[v], clip_id, "", labels[k], make_content(space, labels[k], CUSTOM_TEMPLATES,
                                                                   NoiseConfig(), rng),
                       round(float(rng.uniform(2.0, 4.0)), 1), suffix)
            k += 1


def _row(clip: Clip, style: Style | None, empty_text: bool) -> list[str]:
    text = "" if empty_text else clip.content.text
    if style is None:
        return [clip.video_id, clip.clip_id, text, clip.label]
    shown = clip.content.shown
    high = style.space.high
    unimodal = [score_text(float(np.clip(np.round(shown[m] / style.grid) * style.grid, -high, high)))
                for m in ("text", "audio", "video")]
    return [clip.video_id, clip.clip_id, text, score_text(clip.label), *unimodal, annotation(clip.label), clip.mode]


def _plan_faults(clips: list[Clip]) -> list[Fault]:
    """A missing clip, a silent, a truncated and an untranscribed clip (mp4s, distinct clips)."""
    mp4 = [c for c in clips if c.suffix == ".mp4"]
    pool = mp4 if len(mp4) >= 4 else clips
    picks = [pool[k * len(pool) // 4] for k in range(4)]
    details = ((MISSING_CLIP, "listed in label.csv, no file written"),
               (NO_AUDIO, "mp4 with a video stream only"),
               (TRUNCATED_MEDIA, "file cut to 40% of its bytes; it does not decode"),
               (EMPTY_TEXT, "text column is empty"))
    return [Fault(kind, clip.item, clip.mode, clip.path if kind != EMPTY_TEXT else "label.csv", detail)
            for (kind, detail), clip in zip(details, picks)]


def _corpus(name: str, clips: Callable[[], Iterator[Clip]], style: Style | None,
            request: SampleRequest) -> CorpusPlan:
    """The plan of an MMSA-layout corpus; ``clips()`` draws the same clips at each call."""
    faults = _plan_faults([light(clip) for clip in clips()]) if request.faults else []
    check_distinct_faults(faults, name, request.n)
    broken = {fault.item: fault.kind for fault in faults}
    columns = MMSA_COLUMNS if style is not None else CUSTOM_COLUMNS
    splits = tuple(SPLITS) if style is not None else ("all",)
    items = (_item(clip, style, broken.get(clip.item)) for clip in clips())
    return CorpusPlan({"label.csv": csv_line(columns)}, items, splits, faults)


def _item(clip: Clip, style: Style | None, kind: str | None) -> PlannedItem:
    row = csv_line(_row(clip, style, kind == EMPTY_TEXT))
    media = clip_job(clip.path, clip.content, clip.duration, SPEC, kind)
    return PlannedItem(clip.mode if style is not None else "all", (("label.csv", row),), media)


def _plan_style(name: str, request: SampleRequest) -> CorpusPlan:
    """The sample of a scored corpus in the style ``name`` (mosi, sims, simsv2)."""
    return _corpus(name, lambda: _plan_scores(STYLES[name], request.n, corpus_rng(request.seed, name)),
                   STYLES[name], request)


for _name, _description in (
        ("mosi", "CMU-MOSI, MMSA layout: label.csv + Raw/<video_id>/<clip_id>.mp4"),
        ("sims", "CH-SIMS, MMSA layout, Chinese transcripts, scores in [-1, 1]"),
        ("simsv2", "CH-SIMS v2, MMSA layout, Chinese transcripts, scores in [-1, 1]")):
    register_sample(_name, default_n=100, min_n=6, description=_description)(partial(_plan_style, _name))


@register_sample("custom", default_n=80, min_n=9,
                 description="your own clips: label.csv (video_id, clip_id, text, label) without a mode "
                             "column, emotion names, mp4/avi/wav clips")
def plan_custom(request: SampleRequest) -> CorpusPlan:
    """A corpus of one's own: emotion names, no split column, mixed containers."""
    return _corpus("custom", lambda: _plan_custom(request.n, corpus_rng(request.seed, "custom")), None, request)
