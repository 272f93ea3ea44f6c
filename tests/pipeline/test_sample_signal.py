"""The sample content is learnable: each modality alone beats chance, all three together do best.

Content is drawn and rendered directly (no encoding), so a few hundred utterances stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_predict

from hcm.pipeline.sample import meld, mosei
from hcm.pipeline.sample.content import NoiseConfig, make_content
from hcm.pipeline.sample.render import render_audio, render_video

RATE = 8000


def _audio_features(content) -> list[float]:
    """Dominant frequency, syllable rate (envelope spectrum peak) and loudness of 2 s of voice."""
    samples = render_audio(content.audio, 2.0, RATE, content.render_seed)
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(samples.size, 1 / RATE)
    envelope = np.convolve(np.abs(samples), np.ones(80) / 80, mode="same")
    env_spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    band = (freqs > 0.5) & (freqs < 10)
    return [np.log(freqs[np.argmax(spectrum)]), freqs[band][np.argmax(env_spectrum[band])],
            float(np.sqrt(np.mean(samples ** 2)))]


def _video_features(content) -> list[float]:
    """Mean colour and mean frame-to-frame change of 10 small frames."""
    frames = render_video(content.video, 10, 32, content.render_seed).astype(float)
    return [*frames.mean(axis=(0, 1, 2)) / 255, np.abs(np.diff(frames, axis=0)).mean()]


def _draw(space, labels, templates):
    rng = np.random.default_rng(7)
    contents = [make_content(space, label, templates, NoiseConfig(), rng) for label in labels]
    texts = CountVectorizer(token_pattern=r"[a-z’']+").fit_transform(c.text for c in contents)
    audio = np.array([_audio_features(c) for c in contents])
    video = np.array([_video_features(c) for c in contents])
    standard = lambda x: (x - x.mean(0)) / (x.std(0) + 1e-9)  # noqa: E731
    return {"text": texts.toarray(), "audio": standard(audio), "video": standard(video)}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_emotion_classes_are_learnable_from_each_modality_and_best_from_all():
    labels = np.array([meld.EMOTIONS[i % 7] for i in range(560)])
    features = _draw(meld.SPACE, labels, meld.TEMPLATES)
    log_probs = {}
    for name, x in features.items():
        probs = cross_val_predict(LogisticRegression(max_iter=2000), x, labels, cv=4,
                                  method="predict_proba")
        log_probs[name] = np.log(probs + 1e-9)
    classes = np.unique(labels)
    accuracy = {name: float(np.mean(classes[lp.argmax(1)] == labels))
                for name, lp in log_probs.items()}
    fused = float(np.mean(classes[sum(log_probs.values()).argmax(1)] == labels))
    chance = 1 / 7
    assert all(acc > chance + 0.25 for acc in accuracy.values()), accuracy
    assert fused > max(accuracy.values()) + 0.05, (fused, accuracy)


def test_sentiment_scores_are_learnable_from_each_modality_and_best_from_all():
    rng = np.random.default_rng(3)
    labels = np.round(rng.uniform(-3, 3, 400) * 3) / 3
    features = _draw(mosei.SPACE, labels, mosei.TEMPLATES)
    features["all"] = np.hstack(list(features.values()))
    corr = {}
    for name, x in features.items():
        predicted = cross_val_predict(Ridge(alpha=1.0), x, labels, cv=4)
        corr[name] = float(np.corrcoef(predicted, labels)[0, 1])
    assert all(corr[m] > 0.5 for m in ("text", "audio", "video")), corr
    assert corr["text"] > max(corr["audio"], corr["video"]), corr  # language leads, as in CMU-MOSEI
    unexplained = {name: 1.0 - r ** 2 for name, r in corr.items()}
    best_single = min(unexplained[m] for m in ("text", "audio", "video"))
    assert unexplained["all"] < 0.85 * best_single, corr
