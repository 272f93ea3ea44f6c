"""Extraction profiles (``paper``, ``tiny``), their recipes, and the weights they need.

- ``paper``: the encoder families the paper names, at the sizes hcm chose where it names none:
  RoBERTa-large (the paper says RoBERTa) and EfficientNet-b0 (the paper says EfficientNet),
  CLIP RN50 (image and text towers; the paper's ResNet-50 CLIP), ESResNeXt-FBSP from
  AudioCLIP, librosa Mel, spaCy parse. The paper configs list these choices
  (``hcm_choices.fixed.stage_one`` in ``configs/hcmnet/<dataset>.json``).
- ``tiny``: the same code paths at small sizes, randomly initialised with a fixed seed and with
  no download at all; for tests and the offline demo.

A profile holds one settings object per encoder, keyed by the encoder's registered name; which
encoders a profile has, and with which settings, each encoder declares itself
(``paper_settings``/``tiny_settings`` in ``hcm.pipeline.encoders.base``).

:func:`resolve_weights` finds every weight file a profile needs *before* anything is decoded
(lookup order in ``hcm.pipeline.weights``), identifies each by content, and raises one
:class:`MissingWeightsError` naming each missing weight and how to provide it.
:func:`profile_from_recipe` rebuilds the profile a cache was extracted with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from hcm.cache.schema import RECIPE_VERSION, to_json
from hcm.core.errors import HcmError, UsageError
from hcm.core.registry import Registry
from hcm.pipeline.weights import MissingWeightsError, ResolvedWeights, WeightOptions, WeightSpec, resolve_specs

__all__ = ["MissingWeightsError", "PROFILES", "Profile", "RecipeError", "ResolvedWeights", "Sampling",
           "WeightOptions", "get_profile", "paper_profile", "profile_from_recipe", "resolve_weights", "tiny_profile"]

if TYPE_CHECKING:
    from hcm.pipeline.encoders.base import Encoder
    from hcm.pipeline.encoders.graph import ParserSettings

# The encoders (and with them torch) are imported where a profile is built or used, not here: the
# command line checks a --profile name against PROFILES before any heavy library loads.


def _parser_settings(model: str | None = None) -> ParserSettings:
    from hcm.pipeline.encoders.graph import ParserSettings

    return ParserSettings(model) if model else ParserSettings()


class RecipeError(HcmError):
    """A cache's recipe that this hcm cannot rebuild into the same profile."""


#: Stage one's values that the paper does not give, with hcm's reason; each profile's recipe
#: (and so every cache's ``recipe["profile"]["hcm_choices"]``) records them. They document the
#: settings above; rebuilding a profile from a recipe compares the settings, not these words.
STAGE_ONE_CHOICES = {
    "paper": {
        "text_encoder": "RoBERTa-large, last hidden layer: the paper names RoBERTa without a size or layer",
        "video_encoder": "EfficientNet-b0, globally average-pooled: the paper names EfficientNet without a "
                         "variant or pooling",
        "frames": "16 frames per clip, the frame at the midpoint of each of 16 equal bins: the paper gives no "
                  "frame count or sampling rule",
        "segments": "8 overlapping audio segments of at least 1 s at 44.1 kHz (ESResNeXt's rate) covering the "
                    "clip: the paper says 'short and overlapping segments' without their number or length",
        "mel": "librosa at 16 kHz, 25 ms window, 10 ms hop, 128 bins, power in dB: the paper names librosa "
               "without settings",
        "clip_text": "one CLIP text embedding per utterance, repeated on every token row by the training data "
                     "path: the paper encodes text with CLIP without saying how its rows meet RoBERTa's tokens",
        "streams": "a modality's streams are concatenated on the feature axis before its head (training data "
                   "path): the paper does not say how two encoders' features of one modality are joined",
    },
    "tiny": {
        "encoders": "small randomly initialised encoders with a fixed seed, for tests and the offline demo; "
                    "not the paper's features",
    },
}


@dataclass(frozen=True)
class Sampling:
    """How one clip is sampled for the encoders."""

    frames: int = 16  # frames per clip (video rows)
    segments: int = 8  # audio segments per clip (ESResNeXt rows)
    segment_seconds: float = 1.0  # length of one audio segment
    audio_rate: int = 44100  # ESResNeXt input rate


@dataclass(frozen=True)
class Profile:
    """Everything that decides the features, except the dataset and the weight files.

    ``settings`` maps each encoder's registered name to its settings, in the order the encoders
    run (text, video, audio).
    """

    name: str
    settings: Mapping[str, Any]
    parser: ParserSettings = field(default_factory=_parser_settings)
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0

    @property
    def encoders(self) -> tuple[str, ...]:
        return tuple(self.settings)

    @property
    def tiny(self) -> bool:
        return self.name == "tiny"

    def weight_specs(self) -> list[WeightSpec]:
        """The weights every encoder of the profile needs, in encoder order."""
        from hcm.pipeline.encoders import encoder_class

        return [spec for name, settings in self.settings.items() for spec in encoder_class(name).weight_specs(settings)]

    def recipe(self) -> dict:
        """The JSON-able recipe of this profile (stored in ``CacheMeta.recipe["profile"]``)."""
        return {"recipe_version": RECIPE_VERSION, "name": self.name,
                "encoders": {name: asdict(settings) for name, settings in self.settings.items()},
                "parser": asdict(self.parser), "sampling": asdict(self.sampling), "seed": self.seed,
                "hcm_choices": dict(STAGE_ONE_CHOICES.get(self.name, {}))}


def _build(name: str, pick: Callable[[type[Encoder]], Any], sampling: Sampling) -> Profile:
    from hcm.pipeline.encoders import encoder_classes

    settings = {cls.name: chosen for cls in encoder_classes() if (chosen := pick(cls)) is not None}
    return Profile(name, settings, sampling=sampling)


PROFILES: Registry[Callable[[], Profile]] = Registry("extraction profile")  # name -> Profile builder


@PROFILES.register("paper")
def paper_profile() -> Profile:
    return _build("paper", lambda cls: cls.paper_settings(), Sampling())


@PROFILES.register("tiny")
def tiny_profile() -> Profile:
    # Audio at 16 kHz, the sample corpora's own rate (the paper profile's 44.1 kHz is ESResNeXt's).
    return _build("tiny", lambda cls: cls.tiny_settings(),
                  Sampling(frames=4, segments=3, segment_seconds=0.25, audio_rate=16000))


def get_profile(name: str, frames: int | None = None, segments: int | None = None,
                spacy_model: str | None = None) -> Profile:
    """Profile ``name`` with optional overrides of the sampling and the spaCy pipeline."""
    profile = PROFILES.get(name)()  # an unknown name: a usage error listing the known ones
    for option, value in (("--frames", frames), ("--segments", segments)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
    sampling = replace(profile.sampling, frames=frames or profile.sampling.frames,
                       segments=segments or profile.sampling.segments)
    parser = _parser_settings(spacy_model) if spacy_model else profile.parser
    return replace(profile, sampling=sampling, parser=parser)


def profile_from_recipe(recipe: Mapping[str, Any]) -> Profile:
    """The profile a cache was extracted with, from its recipe (``CacheMeta.recipe``).

    The profile is rebuilt by name with the recipe's sampling and parser, and must give back the
    very same profile recipe; otherwise :class:`RecipeError` names what this hcm builds differently.
    """
    stored = recipe.get("profile")
    name = stored.get("name") if isinstance(stored, dict) else None
    if name not in PROFILES:
        raise RecipeError(f"the cache's recipe names no profile this hcm can rebuild (profile {name!r}; known: "
                          f"{', '.join(PROFILES)}); it was not made by `hcm extract`")
    sampling, parser = stored.get("sampling") or {}, stored.get("parser") or {}
    profile = get_profile(name, sampling.get("frames"), sampling.get("segments"), parser.get("model") or None)
    rebuilt = json.loads(to_json(profile.recipe()))
    rebuilt.pop("hcm_choices", None)  # words about the settings (absent from older recipes), not settings
    stored = {key: value for key, value in stored.items() if key != "hcm_choices"}
    if rebuilt != stored:
        differing = sorted(k for k in set(rebuilt) | set(stored) if rebuilt.get(k) != stored.get(k))
        encoders = rebuilt.get("encoders", {}), stored.get("encoders") or {}
        changed = sorted(e for e in set(encoders[0]) | set(encoders[1]) if encoders[0].get(e) != encoders[1].get(e))
        raise RecipeError(f"the cache was extracted with a {name!r} recipe that this hcm version builds differently "
                          f"(differs in {differing}" + (f"; encoders {changed}" if changed else "") + "); re-extract "
                          f"the cache, or use the hcm version that made it ({recipe.get('hcm_version')})")
    return profile


def resolve_weights(profile: Profile, options: WeightOptions, check_parser: bool = True) -> ResolvedWeights:
    """Find every weight ``profile`` needs, or raise MissingWeightsError listing all that are missing.

    Checks only files and caches (and, when not offline, one quick network probe per source), so
    it answers within seconds; the spaCy parser is checked here too unless ``check_parser`` is off
    (a caller with its own fallback graph). Only the profile's encoders are looked for, and an
    encoder with random tiny weights needs no file. Digests of new weight files are computed once
    (see ``hcm.pipeline.weights``).
    """
    from hcm.pipeline.encoders.graph import choose_parser

    problems: list[str] = []
    if check_parser:
        try:
            choose_parser(profile.parser)
        except Exception as exc:  # ParserError: reported with the weights, not alone
            problems.append(str(exc))
    resolved, missing = resolve_specs(profile.weight_specs(), options)
    problems += missing
    if problems:
        raise MissingWeightsError(_missing_message(profile, problems))
    return resolved


def weights_recipe(profile: Profile, weights: ResolvedWeights) -> dict[str, dict[str, str]]:
    """``{encoder: {weight name: content id}}`` (the recipe's ``weights``; empty for random encoders)."""
    from hcm.pipeline.encoders import encoder_class

    return {name: weights.ids(encoder_class(name).weight_specs(settings))
            for name, settings in profile.settings.items()}


def _missing_message(profile: Profile, problems: list[str]) -> str:
    lines = [f"profile {profile.name!r} cannot start: {len(problems)} missing weight(s) or model(s):"]
    lines += [f"  - {problem}" for problem in problems]
    if not profile.tiny:
        lines.append("Nothing was decoded. For a quick offline try use --profile tiny (random small encoders).")
    return "\n".join(lines)
