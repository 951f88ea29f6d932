"""The vectorised Speech2Text filterbank against transformers' own, frame by frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import Speech2TextFeatureExtractor

from infergraph.checkpoints.speech_recognition import build_speech_recognizer
from infergraph.components.audio_features import (
    VectorisedSpeech2TextFeatures,
    log_mel_fbank,
    vectorised,
)
from infergraph.components.base import ComponentSettings
from infergraph.components.speech_recognition import SpeechRecognizer

RATE = 16_000


def noise(seconds: float, seed: int, scale: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * scale).clip(-1, 1).astype(np.float32)


@pytest.mark.parametrize(
    ("seconds", "scale"),
    # One frame exactly, a part hop, a second, a quiet clip, a loud clipped one, half a minute.
    [(0.025, 0.1), (0.0351, 0.1), (1.0, 0.1), (2.71, 0.001), (3.3, 2.0), (30.0, 0.1)],
)
# One frame has no variance: the extractor's own normalisation divides by zero there.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_features_are_transformers_own_bit_for_bit(seconds: float, scale: float) -> None:
    own = Speech2TextFeatureExtractor()
    clip = noise(seconds, 7, scale)
    want = own._extract_fbank_features(clip)
    got = log_mel_fbank(clip, own.window, own.mel_filters)
    assert got.dtype == want.dtype == np.float32
    assert got.shape == want.shape and np.array_equal(got, want)
    # And through the extractor's whole call: normalisation and attention mask are its own
    # (one frame has no variance, so its normalised features are NaN on both paths).
    whole = VectorisedSpeech2TextFeatures(**own.to_dict())
    for key, value in own(clip, sampling_rate=RATE, return_tensors="np").items():
        got = whole(clip, sampling_rate=RATE, return_tensors="np")[key]
        assert np.array_equal(got, value, equal_nan=value.dtype.kind == "f")


def test_a_clip_shorter_than_a_frame_has_no_frames() -> None:
    own = Speech2TextFeatureExtractor()
    assert log_mel_fbank(noise(0.02, 1), own.window, own.mel_filters).shape == (0, 80)


def test_extractors_that_compute_otherwise_keep_their_own_path() -> None:
    dithering = Speech2TextFeatureExtractor(dither=1.0)
    kept, why = vectorised(dithering)
    assert kept is dithering and why is not None and "dither" in why
    at_8k = Speech2TextFeatureExtractor(sampling_rate=8_000)
    kept, why = vectorised(at_8k)
    assert kept is at_8k and why is not None and "16 kHz" in why
    swapped, why = vectorised(Speech2TextFeatureExtractor())
    assert isinstance(swapped, VectorisedSpeech2TextFeatures) and why is None


def test_the_recognizer_serves_with_the_vectorised_features(tmp_path: Path) -> None:
    path = build_speech_recognizer(tmp_path / "s2t")
    comp = SpeechRecognizer(ComponentSettings(model_uri=str(path), warmup=False))
    comp.start()
    assert isinstance(comp.feature_extractor, VectorisedSpeech2TextFeatures)
    own = Speech2TextFeatureExtractor.from_pretrained(path)
    clip = noise(1.3, 3)
    prepared = comp.prepare({"audio": clip[None, :]}, {"sampling_rate": RATE})
    want = own(clip, sampling_rate=RATE, return_tensors="np")["input_features"][0]
    assert np.array_equal(prepared.rows[0]["input_features"], want)
