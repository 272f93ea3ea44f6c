"""Extraction profiles (``paper``, ``tiny``) and where their pretrained weights come from.

- ``paper``: the encoders of the paper at full size: RoBERTa-large, EfficientNet-b0, CLIP RN50
  (image and text towers), ESResNeXt-FBSP from AudioCLIP, librosa Mel, spaCy parse.
- ``tiny``: the same code paths at small sizes, randomly initialised with a fixed seed and with
  no download at all; for tests and the offline demo.

:func:`resolve_weights` finds every weight file a profile needs *before* anything is decoded,
and raises one :class:`MissingWeightsError` naming each missing weight and how to provide it.
Lookup order for each weight: the per-encoder option, then ``--weights-dir``, then the
library's own cache (Hugging Face hub cache, torch hub cache, ``~/.cache/clip``), then a
download by the library itself when the network is reachable and offline mode is off
(``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``/``HCM_OFFLINE``). CLIP RN50 and AudioCLIP are
never downloaded by hcm: the message gives their URLs.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hcm.pipeline.encoders.audio import ESResNeXtSettings
from hcm.pipeline.encoders.efficientnet import EfficientNetSettings
from hcm.pipeline.encoders.graph import ParserSettings, choose_parser
from hcm.pipeline.encoders.image import CLIP_BPE_FILE, ClipSettings
from hcm.pipeline.encoders.mel import MelSettings
from hcm.pipeline.encoders.text import RobertaSettings

# 2: tiny encoders' BatchNorm statistics calibrated on seeded noise; 3: tiny BPE trained on the
# smaller sentiment lexicon of the sample corpora
RECIPE_VERSION = 3
ENCODERS = ("roberta", "clip_text", "efficientnet", "clip_image", "esresnext", "mel")
EFFICIENTNET_B0_FILE = "efficientnet-b0-355c32eb.pth"
EFFICIENTNET_B0_URL = "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/" + EFFICIENTNET_B0_FILE
RN50_URL = ("https://openaipublic.azureedge.net/clip/models/"
            "afeb0e10fbe5402f6ec7276a3c5ee2a1a8b06ebf0ba3c2f14a7a4e3b2b11ecc1/RN50.pt")
AUDIOCLIP_FILE = "AudioCLIP-Full-Training.pt"
AUDIOCLIP_URL = "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/" + AUDIOCLIP_FILE
ESRNX_FILE = "ESRNXFBSP.pt"
CLIP_BPE_URL = "https://github.com/openai/CLIP/raw/main/clip/" + CLIP_BPE_FILE
OFFLINE_VARIABLES = ("HCM_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class MissingWeightsError(Exception):
    """Some pretrained weights of a profile are not available; the message lists each and the fix."""


@dataclass(frozen=True)
class Sampling:
    """How one clip is sampled for the encoders."""

    frames: int = 16  # frames per clip (video rows)
    segments: int = 8  # audio segments per clip (ESResNeXt rows)
    segment_seconds: float = 1.0  # length of one audio segment
    audio_rate: int = 44100  # ESResNeXt input rate


@dataclass(frozen=True)
class Profile:
    """Everything that decides the features, except the dataset and the weight files."""

    name: str
    roberta: RobertaSettings
    efficientnet: EfficientNetSettings
    clip: ClipSettings
    esresnext: ESResNeXtSettings
    mel: MelSettings
    parser: ParserSettings = field(default_factory=ParserSettings)
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0
    encoders: tuple[str, ...] = ENCODERS

    @property
    def tiny(self) -> bool:
        return self.name == "tiny"

    def recipe(self) -> dict:
        """The JSON-able recipe of this profile (stored in ``CacheMeta.recipe``)."""
        return {"recipe_version": RECIPE_VERSION, **asdict(self)}


def paper_profile() -> Profile:
    from hcm.pipeline.encoders.audio import released_settings
    from hcm.pipeline.encoders.image import rn50_settings

    return Profile("paper", RobertaSettings(), EfficientNetSettings(), rn50_settings(), released_settings(),
                   MelSettings())


def tiny_profile() -> Profile:
    from hcm.pipeline.encoders.audio import tiny_settings
    from hcm.pipeline.encoders.image import tiny_clip_settings

    roberta = RobertaSettings(model="tiny", max_length=128, hidden_size=128, layers=2, heads=4,
                              intermediate_size=256)
    return Profile("tiny", roberta, EfficientNetSettings(model="tiny", image_size=64), tiny_clip_settings(),
                   tiny_settings(), MelSettings(), sampling=Sampling(frames=4, segments=3, segment_seconds=0.25))


PROFILES = {"paper": paper_profile, "tiny": tiny_profile}


def get_profile(name: str, frames: int | None = None, segments: int | None = None,
                spacy_model: str | None = None) -> Profile:
    """Profile ``name`` with optional overrides of the sampling and the spaCy pipeline."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]()
    for option, value in (("--frames", frames), ("--segments", segments)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    sampling = replace(profile.sampling, frames=frames or profile.sampling.frames,
                       segments=segments or profile.sampling.segments)
    parser = ParserSettings(spacy_model) if spacy_model else profile.parser
    return replace(profile, sampling=sampling, parser=parser)


@dataclass(frozen=True)
class WeightOptions:
    """Where the user says weights are: one folder and/or one path per encoder."""

    weights_dir: Path | None = None
    roberta: str | None = None  # Hugging Face id or local folder
    efficientnet: Path | None = None
    clip: Path | None = None  # RN50.pt or AudioCLIP-Full-Training.pt
    clip_vocab: Path | None = None  # bpe_simple_vocab_16e6.txt.gz
    esresnext: Path | None = None  # AudioCLIP-Full-Training.pt or ESRNXFBSP.pt

    def in_dir(self, *names: str) -> list[Path | None]:
        """Where files ``names`` would be in ``weights_dir`` (``None`` entries without a folder)."""
        folder = Path(self.weights_dir).expanduser() if self.weights_dir else None
        return [folder / name if folder else None for name in names]


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights an extraction uses; ``None`` everywhere for the tiny profile."""

    roberta: str | None = None
    efficientnet: Path | None = None
    clip: Path | None = None
    esresnext: Path | None = None
    clip_vocab: Path | None = None
    tiny_seed: int | None = 0

    def id_of(self, encoder: str) -> str:
        """A short identifier of an encoder's weights for the recipe (file name and size)."""
        if self.tiny_seed is not None:
            return f"tiny-random-seed{self.tiny_seed}"
        value = getattr(self, encoder.split("_")[0])
        if isinstance(value, Path):
            return f"{value.name}:{value.stat().st_size}"
        return str(value)


def offline() -> bool:
    """Whether an offline mode variable is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host:443`` accepts a connection within ``timeout`` seconds (DNS included)."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def _first_file(*candidates: Path | None) -> Path | None:
    for path in candidates:
        if path is not None and Path(path).expanduser().is_file():
            return Path(path).expanduser().resolve()
    return None


def _can_download(host: str) -> bool:
    return not offline() and reachable(host)


def hf_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub.constants import HF_HUB_CACHE

    return HF_HUB_CACHE


def _hf_cached(repo: str) -> bool:
    """Whether the Hugging Face cache holds ``repo``'s config, weights and tokenizer files."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir()), str)

    return (cached("config.json") and (cached("model.safetensors") or cached("pytorch_model.bin"))
            and (cached("tokenizer.json") or cached("vocab.json") or cached("vocab.txt")))


def _find_roberta(options: WeightOptions, model: str) -> tuple[str | None, str]:
    name = options.roberta or model
    folders = [Path(name).expanduser(), *options.in_dir(Path(name).name)]
    for folder in filter(None, folders):
        if (folder / "config.json").is_file():
            return str(folder.resolve()), ""
    if _hf_cached(name) or _can_download("huggingface.co"):
        return name, ""
    return None, (
        f"RoBERTa {name!r}: not in the Hugging Face cache ({hf_cache_dir()}) and no download possible "
        f"(offline). Fix: download it once where there is network "
        f"(`hf download {name}`, then copy the cache), or save it into <weights-dir>/{Path(name).name}/ "
        f"(config.json, model.safetensors, tokenizer files), or pass --roberta FOLDER."
    )


def _find_efficientnet(options: WeightOptions, model: str) -> tuple[Path | None, str]:
    import torch

    filename = EFFICIENTNET_B0_FILE if model == "efficientnet-b0" else f"{model}.pth"
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / filename
    found = _first_file(options.efficientnet, *options.in_dir(filename), hub_file)
    if found is not None:
        return found, ""
    if model == "efficientnet-b0" and _can_download("github.com"):
        from torch.hub import download_url_to_file

        hub_file.parent.mkdir(parents=True, exist_ok=True)
        download_url_to_file(EFFICIENTNET_B0_URL, str(hub_file))
        return hub_file, ""
    return None, (
        f"EfficientNet {model!r}: {filename} not found in the torch hub cache ({hub_file.parent}) or "
        f"--weights-dir. Fix: download {EFFICIENTNET_B0_URL} into <weights-dir>/ (or the torch hub "
        f"cache), or pass --efficientnet-weights FILE."
    )


def _find_clip(options: WeightOptions) -> tuple[Path | None, str]:
    found = _first_file(options.clip, *options.in_dir("RN50.pt", AUDIOCLIP_FILE), Path("~/.cache/clip/RN50.pt"))
    if found is not None:
        return found, ""
    return None, (
        f"CLIP RN50: neither RN50.pt nor {AUDIOCLIP_FILE} found in --weights-dir or ~/.cache/clip. "
        f"Fix: download {RN50_URL} (OpenAI) or {AUDIOCLIP_URL} (AudioCLIP, holds CLIP too) into "
        f"<weights-dir>/, or pass --clip-weights FILE."
    )


def _find_clip_vocab(options: WeightOptions) -> tuple[Path | None, str]:
    found = _first_file(options.clip_vocab, *options.in_dir(CLIP_BPE_FILE), Path("~/.cache/clip") / CLIP_BPE_FILE)
    if found is not None:
        return found, ""
    return None, (
        f"CLIP BPE vocabulary: {CLIP_BPE_FILE} not found in --weights-dir or ~/.cache/clip. "
        f"Fix: download {CLIP_BPE_URL} into <weights-dir>/."
    )


def _find_esresnext(options: WeightOptions) -> tuple[Path | None, str]:
    found = _first_file(options.esresnext, *options.in_dir(AUDIOCLIP_FILE, ESRNX_FILE))
    if found is not None:
        return found, ""
    return None, (
        f"ESResNeXt-FBSP: neither {AUDIOCLIP_FILE} nor {ESRNX_FILE} found in --weights-dir. "
        f"Fix: download {AUDIOCLIP_URL} into <weights-dir>/, or pass --esresnext-weights FILE."
    )


def resolve_weights(profile: Profile, options: WeightOptions, check_parser: bool = True) -> ResolvedWeights:
    """Find every weight ``profile`` needs, or raise MissingWeightsError listing all that are missing.

    Only the encoders in ``profile.encoders`` are looked for; a tiny profile needs no file unless
    its RoBERTa names a real model. Checks only files and caches (and, when not offline, one
    quick network probe per source), so it answers within seconds; the spaCy parser is checked
    here too unless ``check_parser`` is off (a caller with its own fallback graph).
    """
    problems: list[str] = []
    if check_parser:
        try:
            choose_parser(profile.parser)
        except Exception as exc:  # ParserError: reported with the weights, not alone
            problems.append(str(exc))
    wanted = set(profile.encoders)
    finders = {
        "roberta": ("roberta" in wanted and not profile.roberta.tiny,
                    lambda: _find_roberta(options, profile.roberta.model)),
        "efficientnet": ("efficientnet" in wanted and not profile.tiny,
                         lambda: _find_efficientnet(options, profile.efficientnet.model)),
        "clip": (bool(wanted & {"clip_text", "clip_image"}) and not profile.tiny, lambda: _find_clip(options)),
        "clip_vocab": ("clip_text" in wanted and not profile.tiny, lambda: _find_clip_vocab(options)),
        "esresnext": ("esresnext" in wanted and not profile.tiny, lambda: _find_esresnext(options)),
    }
    found = {}
    for name, (needed, find) in finders.items():
        if needed:
            found[name], why = find()
            problems += [why] if why else []
    if problems:
        raise MissingWeightsError(_missing_message(profile, problems))
    return ResolvedWeights(**found, tiny_seed=profile.seed if profile.tiny else None)


def _missing_message(profile: Profile, problems: list[str]) -> str:
    lines = [f"profile {profile.name!r} cannot start: {len(problems)} missing weight(s) or model(s):"]
    lines += [f"  - {problem}" for problem in problems]
    if not profile.tiny:
        lines.append("Nothing was decoded. For a quick offline try use --profile tiny (random small encoders).")
    return "\n".join(lines)
