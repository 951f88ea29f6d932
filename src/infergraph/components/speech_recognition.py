"""Speech to text: Speech2Text and Whisper (encoder-decoder, `generate`) or wav2vec2-style CTC.

Input contract (why each rule exists):

* `audio` is FP32 mono PCM in [-1, 1], shape [N, samples] or [samples]. A
  tensor is rectangular, so clips of different lengths either travel one per
  request (the batcher still merges them into one forward pass) or zero-padded
  to a common length with an optional INT32/INT64 `lengths` [N] input giving
  each clip's real sample count (without it the padding is transcribed as silence).
* `sampling_rate` (request parameter or INT32 input [1]) is required: features
  computed at the wrong rate produce confident nonsense, so a mismatch with the
  feature extractor's rate (16 kHz) is a 400 naming both rates. With option
  `resample: true` the clip is resampled instead, by linear interpolation in
  numpy (no torchaudio/scipy dependency; no anti-alias filter, so downsampling
  from high rates loses some quality: resample client-side when it matters).
* NaN/inf samples, non-FP32 data, >2-D tensors, empty clips and clips over
  option `max_seconds` (default 60; Whisper's window caps it at 30) are rejected.
* So is a clip shorter than the model reads (`min_samples`): for Speech2Text two filterbank
  frames (35 ms: its per-clip normalisation divides by the features' spread, which one
  frame does not have), for a CTC model its convolutional feature encoder's receptive field
  (wav2vec2-base: 400 samples). Such a clip failed the forward pass of every clip batched
  with it, or was answered from padding or NaN features. Whisper pads any clip to its window.

Speech2Text's filterbank is computed by `audio_features`, 128 frames at a time, where it
gives transformers' own features bit for bit (checked at load), in a third to a fifth of
the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.parameters import as_int, bounded_int
from infergraph.errors import InputError, PayloadTooLargeError
from infergraph.json_types import JSONObject

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

log = logging.getLogger(__name__)

WHISPER_WINDOW_SECONDS = 30.0
MAX_BEAMS = 8


def conv_receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Input samples a stack of unpadded 1-D convolutions needs for one output step."""
    samples = 1
    for kernel, stride in reversed(list(zip(kernels, strides, strict=True))):
        samples = (samples - 1) * stride + kernel
    return samples


def resample_linear(clip: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample by linear interpolation between neighbouring samples."""
    if rate == target or clip.size == 0:
        return clip
    n_out = max(1, round(clip.size * target / rate))
    positions = np.arange(n_out, dtype=np.float64) * (rate / target)
    return np.interp(positions, np.arange(clip.size), clip).astype(np.float32)


class SpeechRecognizer(Component):
    """Transcribes FP32 mono clips; see the module docstring for the input rules."""

    family: ClassVar[str] = "speech-recognition"
    default_model: ClassVar[str] = "facebook/s2t-small-librispeech-asr"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("audio", "FP32", (-1, -1), "mono PCM in [-1, 1], one clip per row"),
        TensorSpec(
            "sampling_rate", "INT32", (1,), "Hz; or the `sampling_rate` parameter", optional=True
        ),
        TensorSpec("lengths", "INT64", (-1,), "real samples per zero-padded row", optional=True),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("transcript", "BYTES", (-1,), "text of each clip"),
    )
    # The model's own rate is read at load; before it, example inputs (a deployment profiled
    # through its endpoint) use the usual 16 kHz, which the server resamples if it must.
    rate: int = 16_000

    def load(self) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoFeatureExtractor,
            AutoModelForCTC,
            AutoModelForSpeechSeq2Seq,
            AutoTokenizer,
        )
        from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

        source = self.model_source()
        with loading_from(source):
            config = AutoConfig.from_pretrained(source)
            self.is_ctc = config.model_type in MODEL_FOR_CTC_MAPPING_NAMES
            model_cls = AutoModelForCTC if self.is_ctc else AutoModelForSpeechSeq2Seq
            model = model_cls.from_pretrained(source, dtype=self.dtype)
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(source)
            self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = model.to(self.device).eval()
        self.is_whisper = config.model_type == "whisper"
        self.rate = int(self.feature_extractor.sampling_rate)
        self.min_samples = self._min_samples(config)
        self._vectorise_features(source)
        max_seconds = float(self.option("max_seconds", 60.0))
        if self.is_whisper:  # one window (30 s) per clip; longer needs chunked long-form decoding
            window = getattr(self.feature_extractor, "chunk_length", None) or WHISPER_WINDOW_SECONDS
            max_seconds = min(max_seconds, float(window))
        self.max_seconds = max_seconds
        decoder_positions = getattr(config, "max_target_positions", 1024) or 1024
        self.max_new_tokens_limit = max(1, min(int(decoder_positions) - 8, 1024))
        self.default_max_new_tokens = min(
            int(self.option("max_new_tokens", 128)), self.max_new_tokens_limit
        )
        self.default_beams = int(self.option("num_beams", 1))
        self._torch = torch

    def _min_samples(self, config: PretrainedConfig) -> int:
        """The shortest clip the model reads (module docstring)."""
        if self.is_whisper:
            return 1
        kernels = getattr(config, "conv_kernel", None)
        strides = getattr(config, "conv_stride", None)
        if self.is_ctc and kernels and strides:
            return conv_receptive_field(kernels, strides)
        from infergraph.components import audio_features  # transformers: imported on load only

        # Filterbank features normalised by their spread over the clip need two frames to have
        # one.
        extractor = self.feature_extractor
        by_spread = getattr(extractor, "do_ceptral_normalize", False) and getattr(
            extractor, "normalize_vars", False
        )
        frame = round(audio_features.FRAME_SECONDS * self.rate)
        hop = round(audio_features.HOP_SECONDS * self.rate)
        return frame + hop if by_spread else frame

    def _vectorise_features(self, source: str) -> None:
        from infergraph.components import audio_features  # transformers: imported on load only

        self.feature_extractor, why_not = audio_features.vectorised(self.feature_extractor)
        if why_not is not None:
            log.info("speech-recognition: %s keeps its own features: %s", source, why_not)

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        t = np.arange(self.rate, dtype=np.float32) / self.rate  # one second
        tone = (0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        return {
            "audio": np.stack([tone] * batch_size),
            "sampling_rate": np.array([self.rate], dtype=np.int32),
        }

    # -- validation --------------------------------------------------------------------------
    def _sampling_rate(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]
    ) -> int:
        if "sampling_rate" in inputs:
            value = inputs["sampling_rate"]
            if value.dtype.kind not in "iu" or value.size != 1:
                raise InputError("sampling_rate", "expected one INT32 value, e.g. [16000]")
            rate = int(value.reshape(-1)[0])
        elif "sampling_rate" in parameters:  # Infinity and 16000.9 refused, not 500 or truncated
            rate = as_int(parameters["sampling_rate"], "sampling_rate", 0, 10**9)
        else:
            raise InputError(
                "sampling_rate",
                f"required: give the audio's rate in Hz (the model needs {self.rate}) as a "
                "request parameter or an INT32 input",
            )
        if not 1000 <= rate <= 384_000:
            raise InputError("sampling_rate", f"{rate} Hz is not a plausible audio rate")
        return rate

    def _clips(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        audio = self.require(inputs, "audio")
        if audio.dtype != np.float32:
            kind = "BYTES" if audio.dtype == object else str(audio.dtype).upper()
            raise InputError("audio", f"datatype {kind} not accepted; expected FP32 samples")
        if audio.ndim == 1:
            audio = audio[None, :]
        if audio.ndim != 2:
            raise InputError(
                "audio", f"expected shape [N, samples] (mono), got {list(audio.shape)}"
            )
        if audio.shape[1] == 0:
            raise InputError("audio", "clips have no samples")
        lengths = [audio.shape[1]] * audio.shape[0]
        if "lengths" in inputs:
            given = inputs["lengths"].reshape(-1)
            if given.dtype.kind not in "iu" or given.size != audio.shape[0]:
                raise InputError("lengths", f"expected {audio.shape[0]} integers, one per clip")
            for i, n in enumerate(given):
                if not 0 < int(n) <= audio.shape[1]:
                    raise InputError("lengths", f"{int(n)} not in 1..{audio.shape[1]}", index=i)
            lengths = [int(n) for n in given]
        clips = []
        for i, (row, n) in enumerate(zip(audio, lengths, strict=True)):
            clip = row[:n]
            if not np.isfinite(clip).all():
                raise InputError("audio", "contains NaN or infinite samples", index=i)
            clips.append(clip)
        return clips

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        clips = self._clips(inputs)
        rate = self._sampling_rate(inputs, parameters)
        notes: JSONObject = {}
        if rate != self.rate:
            if not bool(self.option("resample", False)):
                raise InputError(
                    "sampling_rate",
                    f"audio is at {rate} Hz but the model needs {self.rate} Hz; resample it, "
                    "or set option resample: true",
                )
            clips = [resample_linear(c, rate, self.rate) for c in clips]
            notes["resampled_from"] = rate
        for i, clip in enumerate(clips):
            seconds = clip.size / self.rate
            if clip.size < self.min_samples:
                raise InputError(
                    "audio",
                    f"clip is {clip.size} samples ({seconds * 1000:.1f} ms at {self.rate} Hz); "
                    f"the model needs at least {self.min_samples} samples "
                    f"({self.min_samples / self.rate * 1000:g} ms)",
                    index=i,
                )
            if seconds > self.max_seconds:
                raise PayloadTooLargeError(
                    "audio",
                    f"clip is {seconds:.1f} s; the limit is {self.max_seconds:g} s "
                    "(option max_seconds)",
                    index=i,
                )
        rows = []
        for clip in clips:
            feats = self.feature_extractor(clip, sampling_rate=self.rate, return_tensors="np")
            rows.append({k: v[0] for k, v in feats.items()})
        if self.is_ctc:
            key: Hashable = None
        else:
            max_new = bounded_int(
                parameters,
                "max_new_tokens",
                self.default_max_new_tokens,
                1,
                self.max_new_tokens_limit,
            )
            beams = bounded_int(parameters, "num_beams", self.default_beams, 1, MAX_BEAMS)
            key = (max_new, beams)
        return Prepared(rows=rows, batch_key=key, notes=notes)

    # -- inference ---------------------------------------------------------------------------
    def run_batch(self, rows: list[dict[str, np.ndarray]], batch_key: Hashable) -> list[str]:
        torch = self._torch
        batch = self.feature_extractor.pad(rows, padding=True, return_tensors="pt")
        feed = {
            k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in batch.items()
        }
        with torch.inference_mode():
            if self.is_ctc:
                return self._ctc(feed)
            max_new, beams = cast(tuple[int, int], batch_key)
            kwargs: dict[str, object] = {
                "max_new_tokens": max_new,
                "num_beams": beams,
                "max_length": None,
            }
            if self.is_whisper:
                for name in ("language", "task"):
                    if self.option(name, None):
                        kwargs[name] = self.option(name, None)
            generated = self.model.generate(**feed, **kwargs)
        sequences = getattr(generated, "sequences", generated)
        return [t.strip() for t in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    def _ctc(self, feed: dict[str, torch.Tensor]) -> list[str]:
        """Greedy CTC: argmax per frame, then the tokenizer collapses repeats and blanks."""
        torch = self._torch
        mask = feed.get("attention_mask")
        logits = self.model(**feed).logits
        ids = logits.argmax(dim=-1)
        if mask is not None:
            frames = self.model._get_feat_extract_output_lengths(mask.sum(-1)).tolist()
        else:
            frames = [ids.shape[1]] * ids.shape[0]
        pad = self.tokenizer.pad_token_id
        rows = [
            torch.where(torch.arange(ids.shape[1]) < n, r.cpu(), pad)
            for r, n in zip(ids, frames, strict=True)
        ]
        decoded = self.tokenizer.batch_decode(torch.stack(rows), skip_special_tokens=True)
        return [t.strip() for t in decoded]

    def finish(self, results: list[str], prepared: Prepared) -> dict[str, np.ndarray]:
        return {"transcript": np.array(results, dtype=object)}

    def warmup(self) -> None:
        """Short generation: a random-weight model would otherwise decode up to the cap."""
        prepared = self.prepare(self.example_inputs(1), {"max_new_tokens": 4})
        self.finish(self.run_batch(prepared.rows, prepared.batch_key), prepared)
