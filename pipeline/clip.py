"""One clip outside any dataset through stage one: the item ``hcm extract`` would write for it.

:class:`ClipExtractor` builds a profile's encoders once and runs clips (and their transcripts)
through the same decoder, preparers and encoders as an extraction (``hcm.pipeline.decoding``);
:func:`extract_clip` does it for one clip. ``hcm predict`` uses them, with the recipe of a run's
cache, and refuses weights or streams that are not that cache's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hcm.cache import CacheMeta, Item
from hcm.cache.schema import recipe_precision, weight_changes
from hcm.core.device import resolve_device
from hcm.core.errors import UsageError
from hcm.core.names import CLASSIFICATION
from hcm.pipeline.datasets.base import Utterance
from hcm.pipeline.decoding import Decoded, MediaDecoder, encode_batch, inference_threads
from hcm.pipeline.encoders.base import Encoder
from hcm.pipeline.encoders.precision import check_choice, choose_precision, mismatch_note
from hcm.pipeline.extract import ExtractionError, build_encoders
from hcm.pipeline.media import MediaRef
from hcm.pipeline.profiles import Profile, WeightOptions, get_profile, resolve_weights, weights_recipe

log = logging.getLogger(__name__)


class ClipError(UsageError):
    """A clip that cannot be used at all (missing, not a file, undecodable)."""


@dataclass(frozen=True)
class ClipInput:
    """One clip outside any dataset: the file, its transcript (``None`` masks the text) and the
    utterances around it (RoBERTa's context window, as the dataset readers give it in training)."""

    clip: Path
    text: str | None = None
    context_before: tuple[str, ...] = ()
    context_after: tuple[str, ...] = ()


class ClipExtractor:
    """Stage one for clips outside any dataset: the profile's encoders are built once, then each call
    turns a batch of clips into the items ``hcm extract`` would write (same decoding, encoders, masks).

    Args:
        profile: a profile or its name (``tiny``, ``paper``).
        weights: where the profile's weight files are.
        device: ``auto``, ``cpu``, ``cuda``.
        like: a cache whose features the items must match: every encoder's weights (by content)
            and streams must be that cache's, otherwise :class:`ExtractionError` names the encoder.
        precision: the encoders' arithmetic; ``auto`` takes the precision of ``like`` when the
            device runs it (else the device's default, see ``hcm.pipeline.encoders.precision``).
            When the precision differs from that of ``like``, ``notes`` says so (and a warning is
            logged): the features then differ from the cache's by up to the documented tolerance.
    """

    def __init__(self, profile: Profile | str = "tiny", *, weights: WeightOptions | None = None,
                 device: str = "auto", like: CacheMeta | None = None, precision: str = "auto") -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        check_choice(precision)
        resolved = resolve_weights(self.profile, weights or WeightOptions())
        if like is not None:
            _check_weights(like, weights_recipe(self.profile, resolved))
        self.device = resolve_device(device)
        cached = recipe_precision(like.recipe) if like is not None else None
        self.precision = choose_precision(precision, self.device, self.profile.tiny, cached)
        self.notes: list[str] = []  # remarks every item of this extractor shares
        if cached is not None and cached != self.precision:
            self.notes.append(mismatch_note(cached, self.precision, self.device))
            log.warning("%s", self.notes[-1])
        self.encoders = build_encoders(self.profile, resolved, self.device, self.precision)
        if like is not None:
            check_streams(self.encoders, like)
        self.label: float | int = 0 if like is not None and like.task == CLASSIFICATION else 0.0
        preparers = tuple((e.name, e.preparer) for e in self.encoders if e.preparer is not None)
        self.decoder = MediaDecoder(self.profile.sampling.frames, preparers)

    def __call__(self, clips: Sequence[ClipInput]) -> list[Item | ClipError]:
        """One item per clip, in order; a clip that cannot be used at all gives its :class:`ClipError`."""
        results: list[Item | ClipError] = []
        decoded = []
        for given in clips:
            try:
                results.append(self._decode(given))
                decoded.append(results[-1])
            except ClipError as error:
                results.append(error)
        with inference_threads(self.device):
            items = iter(encode_batch(decoded, self.encoders)[0]) if decoded else iter(())
        return [result if isinstance(result, ClipError) else next(items) for result in results]

    def _decode(self, given: ClipInput) -> Decoded:
        clip = Path(given.clip)
        check_clip(clip)
        ref = MediaRef(clip)
        utterance = Utterance(id=clip.stem, split="test", label=self.label, labels={}, text=given.text or "",
                              group=clip.stem, position=0, video=ref, audio=ref,
                              context_before=list(given.context_before), context_after=list(given.context_after))
        decoded = self.decoder(utterance)
        if decoded.failure is not None:  # the decoder's detail names the reason too: say it once
            said = decoded.failure_detail if decoded.failure_reason in decoded.failure_detail else decoded.failure
            raise ClipError(f"cannot use clip {clip}: {said}")
        return decoded


def extract_clip(clip: Path, text: str | None = None, profile: Profile | str = "tiny", *,
                 context: tuple[Sequence[str], Sequence[str]] = ((), ()), weights: WeightOptions | None = None,
                 device: str = "auto", like: CacheMeta | None = None, precision: str = "auto") -> Item:
    """The cache item ``hcm extract`` would write for one clip (:class:`ClipExtractor` for one clip).

    ``context``: the utterances before and after the clip; ``precision`` as in :class:`ClipExtractor`.
    Raises :class:`ClipError` when the clip is missing or none of its media can be read.
    """
    check_clip(Path(clip))
    extractor = ClipExtractor(profile, weights=weights, device=device, like=like, precision=precision)
    (result,) = extractor([ClipInput(Path(clip), text, tuple(context[0]), tuple(context[1]))])
    if isinstance(result, ClipError):
        raise result
    return result


def check_clip(clip: Path) -> None:
    """Refuse a clip path that is not a file (:class:`ClipError`)."""
    if not clip.is_file():
        what = "is not a file" if clip.exists() else "does not exist"
        raise ClipError(f"clip {clip} {what}; give the path of one video (e.g. .mp4) or audio file")


def _check_weights(meta: CacheMeta, weights: dict) -> None:
    changed = weight_changes(meta.recipe, {"weights": weights})
    if changed:
        raise ExtractionError(f"the weights found now are not the ones the cache was extracted with: "
                              f"{'; '.join(changed)}; pass the weight files of that extraction (--weights-dir)")


def check_streams(encoders: Sequence[Encoder], meta: CacheMeta) -> None:
    """Refuse encoders whose streams (shape, dtype, weights, settings) differ from the cache's."""
    made = {spec.name: spec.to_dict() for encoder in encoders for spec in encoder.outputs}
    cached = {spec.name: spec.to_dict() for spec in meta.features}
    differing = sorted(name for name in set(made) | set(cached) if made.get(name) != cached.get(name))
    if differing:
        encoders_named = sorted({(made.get(n) or cached.get(n))["encoder"] for n in differing})
        raise ExtractionError(f"the encoders {encoders_named} built now do not reproduce the cache's streams "
                              f"{differing}; extract with the settings and weights of that cache")

