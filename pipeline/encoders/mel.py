"""Log-Mel spectrogram frames of an utterance's audio (``mel`` stream), made with librosa.

Audio is read at 16 kHz mono; the power Mel spectrogram uses a 25 ms Hann window
(``n_fft`` 400), a 10 ms hop (``hop_length`` 160) and 128 Mel bins, then
``librosa.power_to_db`` (reference 1.0, floor 1e-10, no top-dB clipping). One row per frame:
``(k, 128)`` with ``k = 1 + n_samples // 160`` (centred frames). The computation has no weights;
it runs entirely in the decoding workers, and the encoder only stores the rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from hcm.cache.schema import FeatureSpec
from hcm.pipeline.encoders.base import Encoded, Encoder, Preparer, register_encoder


@dataclass(frozen=True)
class MelSettings:
    """librosa Mel spectrogram parameters (the defaults are the paper profile's)."""

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None


@dataclass(frozen=True)
class MelPreparer(Preparer):
    """Computes the log-Mel frames of a waveform (runs in decoding workers)."""

    settings: MelSettings

    @property
    def modality(self) -> str:
        return "audio"

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    def __call__(self, media: np.ndarray) -> np.ndarray:
        return log_mel(media, self.settings)


def log_mel(wave: np.ndarray, settings: MelSettings) -> np.ndarray:
    """(n,) float32 waveform -> (k, n_mels) float32 log-Mel frames (dB)."""
    import librosa

    power = librosa.feature.melspectrogram(
        y=np.asarray(wave, dtype=np.float32), sr=settings.sample_rate, n_fft=settings.n_fft,
        hop_length=settings.hop_length, n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax,
    )  # (n_mels, k)
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)  # (k, n_mels)


@register_encoder("mel")
class MelEncoder(Encoder):
    """Stores the log-Mel frames the workers computed (float16)."""

    modality = "audio"
    settings_class = MelSettings

    @classmethod
    def paper_settings(cls) -> MelSettings:
        return MelSettings()

    @classmethod
    def tiny_settings(cls) -> MelSettings:
        return MelSettings()

    def __init__(self, settings: MelSettings) -> None:
        super().__init__("cpu")
        self.settings = settings

    @classmethod
    def from_profile(cls, profile: Any, weights: Any, device: Any) -> "MelEncoder":
        return cls(profile.settings[cls.name])

    @property
    def preparer(self) -> Preparer:
        return MelPreparer(self.settings)

    @property
    def outputs(self) -> list[FeatureSpec]:
        config = {**asdict(self.settings), "scale": "power_to_db(ref=1, amin=1e-10)", "library": "librosa"}
        return [FeatureSpec("mel", (self.settings.n_mels,), "float16", self.name, "none", config)]

    def encode(self, utterances: Sequence[Any], prepared: Sequence[np.ndarray]) -> list[Encoded]:
        return [Encoded({"mel": frames.astype(np.float16)}) for frames in prepared]
