"""Speech2Text's log-mel filterbank, vectorised in numpy.

Without torchaudio, transformers computes Speech2Text's Kaldi-style filterbank frame by frame
in Python (`audio_utils.spectrogram`): about 1.4 ms of a request's CPU for a one-second clip,
more than the tiny model's forward pass, and more for every second of audio. The same
arithmetic on many frames at once (strided frames, then DC removal, pre-emphasis, the Povey
window, one batched real FFT, power, mel projection, log) gives the same features, bit for
bit: a request's whole preparation took 0.58 ms instead of 1.6 for a one-second clip, 13
instead of 63 for 30 s (`docs/benchmarks.md`, 2026-12-06). `vectorised` serves with it only
after checking that on two clips, so a transformers release that computes them otherwise
keeps its own path. Imported at load only (transformers).
"""

from __future__ import annotations

import numpy as np
from transformers import Speech2TextFeatureExtractor
from transformers.feature_extraction_utils import FeatureExtractionMixin

# The filterbank's framing, as transformers' Speech2Text extractor sets it (Kaldi defaults:
# 25 ms frames every 10 ms, at 16 kHz a 512-point FFT, pre-emphasis 0.97, float32's epsilon).
FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010
RATE = 16_000
FRAME_LENGTH = round(FRAME_SECONDS * RATE)
HOP_LENGTH = round(HOP_SECONDS * RATE)
FFT_LENGTH = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
# Kaldi's features read 16-bit integer samples; clips arrive as floats in [-1, 1].
INT16_SCALE = 2**15
# Frames a block (1.28 s of audio): a block's float64 copies fit in a core's cache.
BLOCK_FRAMES = 128
# What the swap is checked on: two lengths, neither a whole number of hops.
CHECK_SECONDS = (0.37, 1.29)


def log_mel_fbank(waveform: np.ndarray, window: np.ndarray, mel_filters: np.ndarray) -> np.ndarray:
    """[frames, mel bins] float32 log-mel features of a mono clip (float samples in [-1, 1]).

    Each frame's samples are taken in float64, its mean removed, pre-emphasised (the first
    sample scaled by 1 - 0.97), windowed and zero-padded to the FFT length; the FFT's output
    is rounded to complex64 before its power is taken, as the frame-by-frame path stores it.
    Frames go in blocks of `BLOCK_FRAMES`, whose float64 copies stay in the CPU's cache: a
    whole 30 s clip at once (9.6 MB of float64 frames per pass over them) took twice as long.
    """
    samples = (waveform * INT16_SCALE).astype(np.float64).reshape(-1)
    count = max(0, 1 + (samples.size - FRAME_LENGTH) // HOP_LENGTH)
    features = np.empty((count, mel_filters.shape[1]), dtype=np.float32)
    if count == 0:
        return features
    frames_of = np.lib.stride_tricks.sliding_window_view(samples, FRAME_LENGTH)[::HOP_LENGTH]
    window = window.astype(np.float64)
    for start in range(0, count, BLOCK_FRAMES):
        frames = frames_of[start : min(start + BLOCK_FRAMES, count)].copy()
        frames -= frames.mean(axis=1, keepdims=True)
        frames[:, 1:] -= PREEMPHASIS * frames[:, :-1]
        frames[:, 0] *= 1 - PREEMPHASIS
        frames *= window
        spectrum = np.fft.rfft(frames, n=FFT_LENGTH, axis=1).astype(np.complex64)
        power = np.abs(spectrum, dtype=np.float64) ** 2.0
        features[start : start + len(frames)] = np.log(np.maximum(MEL_FLOOR, power @ mel_filters))
    return features


class VectorisedSpeech2TextFeatures(Speech2TextFeatureExtractor):
    """Speech2Text's feature extractor with the filterbank of `log_mel_fbank`; the rest
    (utterance mean and variance normalisation, padding, attention mask) is its own."""

    def _extract_fbank_features(self, waveform: np.ndarray) -> np.ndarray:
        return log_mel_fbank(waveform, self.window, self.mel_filters)


def vectorised(extractor: FeatureExtractionMixin) -> tuple[FeatureExtractionMixin, str | None]:
    """The extractor to serve with: the vectorised twin of a Speech2Text extractor when it
    computes the same features on the check clips, else the extractor itself and why."""
    if not isinstance(extractor, Speech2TextFeatureExtractor):
        return extractor, None  # Whisper's (torch) and wav2vec2's have no frame loop
    if not hasattr(extractor, "mel_filters"):
        return extractor, "it computes the filterbank with torchaudio"
    if extractor.dither:
        return extractor, "it dithers each frame with random noise"
    if len(extractor.window) != FRAME_LENGTH or extractor.sampling_rate != RATE:
        return extractor, f"its frames are not {FRAME_LENGTH} samples at {RATE // 1000} kHz"
    twin = VectorisedSpeech2TextFeatures(**extractor.to_dict())
    rng = np.random.default_rng(0)
    for seconds in CHECK_SECONDS:
        clip = (rng.standard_normal(round(seconds * RATE)) * 0.1).astype(np.float32)
        own = extractor(clip, sampling_rate=RATE, return_tensors="np")["input_features"]
        fast = twin(clip, sampling_rate=RATE, return_tensors="np")["input_features"]
        if not np.array_equal(own, fast):
            return extractor, f"the vectorised features differ on a {seconds} s check clip"
    return twin, None
