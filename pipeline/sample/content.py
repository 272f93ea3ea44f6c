"""What a synthetic utterance says, sounds like and looks like, given its label.

Every sample corpus carries a learnable but noisy signal of its label in each modality, and
the three modalities are noisy independently, so each alone beats chance and all three
together do best.

The label is first placed in a two-axis *affect* space: valence (0 negative .. 1 positive)
and arousal (0 calm .. 1 agitated). Each modality then "shows" a label of its own, drawn
independently from the true one:

- classes: with probability ``fidelity`` the true class, else a class drawn uniformly from
  the corpus's main classes (which may be the true one again);
- scores (CMU-MOSEI, [-3, 3]): the true score plus Gaussian noise of ``sigma``.

The text draws one cue word per template slot (each word perceived separately, so a sentence
may mix a true and a misleading word) and fills the rest with neutral words. Audio turns the
shown affect into pitch (valence), syllable rate and loudness (arousal); video into hue and
brightness (valence) and the speed of a moving square (arousal). See ``docs/sample.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import numpy as np

MODALITIES = ("text", "audio", "video")


@dataclass(frozen=True)
class Affect:
    """A point of the affect plane that every modality renders."""

    valence: float  # 0 negative .. 1 positive
    arousal: float  # 0 calm .. 1 agitated


@dataclass(frozen=True)
class NoiseConfig:
    """How reliably each modality shows the label; the three draws are independent."""

    text_fidelity: float = 0.6  # classes: chance that one cue word comes from the true class
    audio_fidelity: float = 0.6  # classes: chance that the voice shows the true class
    video_fidelity: float = 0.6  # classes: chance that the picture shows the true class
    text_sigma: float = 0.5  # scores: sd of each cue word's score around the true score (text leads,
    # as language does in CMU-MOSEI)
    audio_sigma: float = 1.2  # scores: sd of the score the voice shows
    video_sigma: float = 1.2  # scores: sd of the score the picture shows
    jitter: float = 0.04  # sd of per-item rendering jitter on valence and arousal

    def fidelity(self, modality: str) -> float:
        return getattr(self, f"{modality}_fidelity")

    def sigma(self, modality: str) -> float:
        return getattr(self, f"{modality}_sigma")


@dataclass(frozen=True)
class AudioStyle:
    """The voice of one utterance: a harmonic tone pulsed into syllables."""

    pitch_hz: float  # fundamental frequency, 110 Hz (negative) .. 330 Hz (positive)
    tempo_hz: float  # syllables per second, 1.5 (calm) .. 6 (agitated)
    energy: float  # peak amplitude, 0.1 (calm) .. 0.5 (agitated)


@dataclass(frozen=True)
class VideoStyle:
    """The picture of one utterance: a tinted background with a moving lighter square."""

    hue: float  # HSV hue, 0.62 blue (negative) .. 0.12 orange (positive)
    saturation: float  # HSV saturation of the background
    brightness: float  # HSV value, 0.3 (negative) .. 0.85 (positive)
    speed: float  # pixels per frame the square travels, 0.5 (calm) .. 6 (agitated)


IDLE_VIDEO = VideoStyle(hue=0.0, saturation=0.0, brightness=0.4, speed=0.0)


@dataclass(frozen=True)
class UtteranceContent:
    """Everything a corpus writer needs for one utterance, decided up front."""

    text: str
    audio: AudioStyle
    video: VideoStyle
    shown: Mapping[str, float | str]  # the label each modality shows: text, audio, video
    render_seed: int  # seeds the rendering noise of the audio and video


class LabelSpace(Protocol):
    """How one corpus's labels map onto cue words and the affect plane."""

    def perceive(self, label, modality: str, noise: NoiseConfig, rng: np.random.Generator):
        """The label as one modality (or one cue word) shows it."""

    def affect(self, shown) -> Affect:
        """Where a shown label sits in the affect plane."""

    def word(self, shown, rng: np.random.Generator) -> str:
        """A cue word for a shown label."""

    def summarise(self, shown: Sequence):
        """One label standing for several cue words' labels (the text's overall label)."""


@dataclass(frozen=True)
class ScoreSpace:
    """Sentiment scores in [-3, 3]; cue words come from score buckets -3..3."""

    lexicon: Mapping[int, tuple[str, ...]]
    low: float = -3.0
    high: float = 3.0

    def perceive(self, label: float, modality: str, noise: NoiseConfig,
                 rng: np.random.Generator) -> float:
        return float(np.clip(label + rng.normal(0.0, noise.sigma(modality)), self.low, self.high))

    def affect(self, shown: float) -> Affect:
        span = self.high - self.low
        return Affect(valence=(shown - self.low) / span, arousal=0.15 + 0.8 * abs(shown) / self.high)

    def word(self, shown: float, rng: np.random.Generator) -> str:
        return str(rng.choice(self.lexicon[int(round(shown))]))

    def summarise(self, shown: Sequence[float]) -> float:
        return float(np.mean(shown))


@dataclass(frozen=True)
class ClassSpace:
    """Categorical labels; a misleading modality shows one of ``confusable`` at random."""

    affects: Mapping[str, Affect]
    lexicon: Mapping[str, tuple[str, ...]]
    confusable: tuple[str, ...]

    def perceive(self, label: str, modality: str, noise: NoiseConfig,
                 rng: np.random.Generator) -> str:
        if rng.random() < noise.fidelity(modality):
            return label
        return str(rng.choice(self.confusable))

    def affect(self, shown: str) -> Affect:
        return self.affects[shown]

    def word(self, shown: str, rng: np.random.Generator) -> str:
        return str(rng.choice(self.lexicon[shown]))

    def summarise(self, shown: Sequence[str]) -> str:
        values, counts = np.unique(np.asarray(shown), return_counts=True)
        return str(values[int(np.argmax(counts))])


# Two cue words per score level: the tiny profile's random text encoder gives synonyms unrelated
# features, so a model learns each word's score from that word's own occurrences, and a
# quickstart-sized corpus (about 170 training clips) shows each word about 20 times.
SENTIMENT_LEXICON = MappingProxyType({
    3: ("amazing", "brilliant"),
    2: ("great", "enjoyable"),
    1: ("good", "nice"),
    0: ("okay", "average"),
    -1: ("mediocre", "dull"),
    -2: ("bad", "boring"),
    -3: ("terrible", "awful"),
})

EMOTION_LEXICON = MappingProxyType({
    "neutral": ("fine", "okay", "sure", "alright", "normal"),
    "joy": ("happy", "glad", "delighted", "cheerful", "lovely"),
    "excited": ("thrilled", "incredible", "awesome", "pumped", "ecstatic"),
    "surprise": ("shocked", "unexpected", "stunned", "unbelievable", "astonished"),
    "fear": ("scared", "afraid", "terrified", "nervous", "frightened"),
    "sadness": ("sad", "lonely", "miserable", "heartbroken", "gloomy"),
    "disgust": ("gross", "disgusting", "nasty", "revolting", "repulsive"),
    "anger": ("furious", "angry", "outraged", "livid", "mad"),
    "frustration": ("frustrating", "pointless", "useless", "stuck", "fed up"),
    "other": ("strange", "weird", "odd", "different", "curious"),
    "unclear": ("maybe", "whatever", "perhaps", "somehow", "kind of"),
})

EMOTION_AFFECT = MappingProxyType({
    "neutral": Affect(0.50, 0.30),
    "joy": Affect(0.85, 0.55),
    "excited": Affect(0.95, 0.95),
    "surprise": Affect(0.65, 0.85),
    "fear": Affect(0.25, 0.75),
    "sadness": Affect(0.12, 0.12),
    "disgust": Affect(0.30, 0.45),
    "anger": Affect(0.05, 0.95),
    "frustration": Affect(0.30, 0.65),
    "other": Affect(0.55, 0.50),
    "unclear": Affect(0.45, 0.45),
})


def emotion_space(names: Mapping[str, str], confusable: Sequence[str]) -> ClassSpace:
    """A class space from a corpus's label names mapped to the shared emotion vocabulary."""
    return ClassSpace(
        affects=MappingProxyType({label: EMOTION_AFFECT[e] for label, e in names.items()}),
        lexicon=MappingProxyType({label: EMOTION_LEXICON[e] for label, e in names.items()}),
        confusable=tuple(confusable),
    )


def audio_style(affect: Affect, jitter: float, rng: np.random.Generator) -> AudioStyle:
    """Valence sets the pitch; arousal sets syllable rate and loudness."""
    v, a = _jittered(affect, jitter, rng)
    return AudioStyle(pitch_hz=110.0 * 3.0 ** v, tempo_hz=1.5 + 4.5 * a, energy=0.1 + 0.4 * a)


def video_style(affect: Affect, jitter: float, rng: np.random.Generator) -> VideoStyle:
    """Valence sets hue and brightness; arousal sets how fast the square moves."""
    v, a = _jittered(affect, jitter, rng)
    return VideoStyle(hue=0.62 - 0.5 * v, saturation=0.65, brightness=0.3 + 0.55 * v,
                      speed=0.5 + 5.5 * a)


def _jittered(affect: Affect, jitter: float, rng: np.random.Generator) -> tuple[float, float]:
    v, a = np.clip([affect.valence, affect.arousal] + rng.normal(0.0, jitter, 2), 0.0, 1.0)
    return float(v), float(a)


def make_content(space: LabelSpace, label, templates: Sequence[str], noise: NoiseConfig,
                 rng: np.random.Generator) -> UtteranceContent:
    """The text, voice and picture of one utterance whose true label is ``label``.

    ``templates`` are sentences with ``{}`` slots; each slot receives one cue word.
    """
    text_rng, audio_rng, video_rng = rng.spawn(3)
    template = str(text_rng.choice(templates))
    word_labels = [space.perceive(label, "text", noise, text_rng)
                   for _ in range(template.count("{}"))]
    text = template.format(*(space.word(w, text_rng) for w in word_labels))
    audio_shown = space.perceive(label, "audio", noise, audio_rng)
    video_shown = space.perceive(label, "video", noise, video_rng)
    return UtteranceContent(
        text=text,
        audio=audio_style(space.affect(audio_shown), noise.jitter, audio_rng),
        video=video_style(space.affect(video_shown), noise.jitter, video_rng),
        shown=MappingProxyType({"text": space.summarise(word_labels),
                                "audio": audio_shown, "video": video_shown}),
        render_seed=int(rng.integers(2**63)),
    )
