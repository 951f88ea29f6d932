"""Speech recognition: tiny Speech2Text behind `mlserver start`; Whisper and CTC in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from infergraph.checkpoints.speech_recognition import build_speech_recognizer
from infergraph.components.base import ComponentSettings
from infergraph.components.speech_recognition import SpeechRecognizer, resample_linear
from infergraph.errors import InputError, PayloadTooLargeError
from tests.servers import MLServerProcess, mlserver, v2_input, write_model
from tests.text_fixtures import (
    assert_ready,
    burst,
    grpc_error,
    grpc_infer,
    max_batch_size,
    outputs,
)

pytestmark = pytest.mark.slow

RATE = 16000
SHORT = {"max_new_tokens": 5}


def clip(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * (200 + 50 * seed) * t) * 0.3
    return (tone + rng.normal(0, 0.05, t.size)).astype(np.float32)


def audio_payload(clips: np.ndarray, rate: int = RATE, **params: object) -> dict:
    clips = np.atleast_2d(clips)
    return {
        "inputs": [v2_input("audio", "FP32", clips.reshape(-1).tolist(), list(clips.shape))],
        "parameters": {"sampling_rate": rate, **SHORT, **params},
    }


@pytest.fixture(scope="session")
def s2t_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_speech_recognizer(tmp_path_factory.mktemp("ckpt") / "s2t")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, s2t_dir: Path) -> Iterator[MLServerProcess]:
    models = tmp_path_factory.mktemp("models")
    write_model(models, "asr", "speech-recognition", str(s2t_dir), max_batch_size=8,
                max_batch_time=0.05, max_seconds=3)  # fmt: skip
    write_model(models, "asr-resample", "speech-recognition", str(s2t_dir), resample=True)
    with mlserver(models) as proc:
        yield proc


@pytest.mark.parametrize("architecture", ["whisper", "wav2vec2"])
def test_whisper_and_ctc_checkpoints(tmp_path: Path, architecture: str) -> None:
    path = build_speech_recognizer(tmp_path / architecture, architecture=architecture)
    comp = SpeechRecognizer(ComponentSettings(model_uri=str(path), max_batch_size=4))
    comp.start()
    assert comp.is_ctc == (architecture == "wav2vec2")
    audio = np.stack([clip(1.0, 1), clip(1.0, 2)])
    batched = comp.predict({"audio": audio}, {"sampling_rate": RATE, **SHORT})
    assert batched.outputs["transcript"].shape == (2,)
    solo = comp.predict({"audio": audio[1:]}, {"sampling_rate": RATE, **SHORT})
    assert solo.outputs["transcript"][0] == batched.outputs["transcript"][1]
    if architecture == "whisper":
        with pytest.raises(PayloadTooLargeError, match="limit is 4 s"):  # the tiny window
            comp.prepare({"audio": clip(5.0, 0)}, {"sampling_rate": RATE})
    else:  # zero-padded rows with their true lengths
        padded = np.zeros((2, RATE), dtype=np.float32)
        padded[0, :8000] = audio[0, :8000]
        padded[1] = audio[1]
        result = comp.predict(
            {"audio": padded, "lengths": np.array([8000, RATE])}, {"sampling_rate": RATE}
        )
        assert result.outputs["transcript"].shape == (2,)


def test_validation_in_process(s2t_dir: Path) -> None:
    comp = SpeechRecognizer(ComponentSettings(model_uri=str(s2t_dir), warmup=False))
    comp.start()
    ok = {"audio": clip(0.5, 0)[None, :]}
    with pytest.raises(InputError, match="required") as info:
        comp.prepare(ok, {})
    assert info.value.input_name == "sampling_rate"
    prepared = comp.prepare({**ok, "sampling_rate": np.array([RATE], dtype=np.int32)}, {})
    assert len(prepared.rows) == 1
    with pytest.raises(InputError, match="expected shape"):
        comp.prepare({"audio": np.zeros((1, 2, 100), np.float32)}, {"sampling_rate": RATE})
    with pytest.raises(InputError, match="lengths"):
        comp.prepare({**ok, "lengths": np.array([10**6])}, {"sampling_rate": RATE})
    up = resample_linear(np.array([0.0, 1.0], np.float32), 8000, 16000)
    assert up.tolist() == [0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    ("architecture", "shortest"),
    # Speech2Text: two filterbank frames, 25 ms each every 10 ms (560 samples at 16 kHz), as
    # one frame has no variance to normalise by; the tiny wav2vec2: its convolutional feature
    # encoder's receptive field (kernels 10, 8, 4; strides 5, 4, 4); Whisper pads every clip to
    # its window, so one sample is a clip.
    [("speech2text", 560), ("wav2vec2", 105), ("whisper", 1)],
)
def test_a_clip_shorter_than_the_model_reads_is_refused_by_name(
    tmp_path: Path, architecture: str, shortest: int
) -> None:
    """A clip too short for the model's features used to fail as a bare ValueError in
    prepare (Speech2Text, under 400 samples), as the forward pass's RuntimeError (0 frames),
    which fails every clip batched with it, or with NaN features (1 frame). It is now the
    caller's 400, naming the input, the clip and the model's minimum; a clip of exactly that
    length is transcribed."""
    path = build_speech_recognizer(tmp_path / architecture, architecture=architecture)
    comp = SpeechRecognizer(ComponentSettings(model_uri=str(path), warmup=False))
    comp.start()
    assert comp.min_samples == shortest
    params = {"sampling_rate": RATE, **SHORT}
    if shortest > 1:
        too_short = np.stack([clip(0.5, 0), clip(0.5, 1)])
        lengths = np.array([RATE // 2, shortest - 1])
        with pytest.raises(InputError, match=f"needs at least {shortest} samples") as info:
            comp.prepare({"audio": too_short, "lengths": lengths}, params)
        assert info.value.input_name == "audio" and info.value.index == 1
    shortest_clip = {"audio": clip(1.0, 2)[None, :shortest]}
    features = comp.prepare(shortest_clip, params).rows[0]
    assert all(np.isfinite(np.asarray(value)).all() for value in features.values())
    result = comp.predict(shortest_clip, params)
    assert result.outputs["transcript"].shape == (1,)


def test_a_too_short_clip_in_a_burst_fails_alone(server: MLServerProcess) -> None:
    payloads = [audio_payload(clip(0.5, i)) for i in range(4)]
    payloads.insert(1, audio_payload(clip(0.5, 9)[:300]))
    responses = burst(server, "asr", payloads)
    assert responses[1].status_code == 400, responses[1].text
    assert "'audio'" in responses[1].text and "at least 560 samples" in responses[1].text
    assert all(r.status_code == 200 for i, r in enumerate(responses) if i != 1)
    assert_ready(server, "asr")


def test_rest_transcribes_a_batch(server: MLServerProcess) -> None:
    audio = np.stack([clip(1.0, 1), clip(1.0, 2)])
    resp = server.infer("asr", audio_payload(audio))
    out = outputs(resp)
    assert len(out["transcript"]) == 2 and all(isinstance(t, str) for t in out["transcript"])
    # sampling_rate as an INT32 input instead of a parameter
    payload = audio_payload(audio[:1])
    del payload["parameters"]["sampling_rate"]
    payload["inputs"].append(v2_input("sampling_rate", "INT32", [RATE]))
    assert outputs(server.infer("asr", payload))["transcript"] == out["transcript"][:1]


def test_grpc_transcription(server: MLServerProcess) -> None:
    audio = clip(1.0, 3)
    rest = outputs(server.infer("asr", audio_payload(audio)))
    got = grpc_infer(
        server, "asr", [("audio", "FP32", [1, audio.size], audio.tolist())],
        {"sampling_rate": RATE, **SHORT},
    )  # fmt: skip
    assert got["transcript"] == rest["transcript"]


def test_grpc_nan_audio_is_invalid_argument(server: MLServerProcess) -> None:
    import grpc

    audio = clip(0.5, 0)
    audio[100] = np.nan

    def call() -> None:
        grpc_infer(
            server, "asr", [("audio", "FP32", [1, audio.size], audio.tolist())],
            {"sampling_rate": RATE},
        )  # fmt: skip

    exc = grpc_error(call)
    assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN)
    assert "'audio'" in exc.details() and "NaN" in exc.details()


def test_concurrent_clips_are_batched_each_gets_its_own(server: MLServerProcess) -> None:
    clips = [clip(1.0, i) for i in range(5)]
    solo = [outputs(server.infer("asr", audio_payload(c)))["transcript"] for c in clips]
    responses = burst(server, "asr", [audio_payload(c) for c in clips])
    assert [outputs(r)["transcript"] for r in responses] == solo
    assert max_batch_size(responses) > 1


def test_clips_of_different_lengths_in_concurrent_requests(server: MLServerProcess) -> None:
    """Clips of different lengths share a padded forward pass and each gets one transcript.

    Exact equality with solo runs is not asserted here: zero padding shifts the boundary
    frames of Speech2Text's convolutional front end, which can flip near-tied tokens of a
    random-weight model. Equal-length bursts are compared exactly elsewhere.
    """
    clips = [clip(0.5 + 0.25 * i, i) for i in range(5)]
    responses = burst(server, "asr", [audio_payload(c) for c in clips])
    for response in responses:
        assert response.status_code == 200, response.text
        transcript = outputs(response)["transcript"]
        assert len(transcript) == 1 and isinstance(transcript[0], str)
    assert max_batch_size(responses) > 1


def test_bad_clip_in_a_burst_fails_alone(server: MLServerProcess) -> None:
    payloads = [audio_payload(clip(0.5, i)) for i in range(4)]
    payloads.insert(2, audio_payload(clip(0.5, 9, rate=8000), rate=8000))
    responses = burst(server, "asr", payloads)
    assert responses[2].status_code == 400 and "8000 Hz" in responses[2].text
    assert all(r.status_code == 200 for i, r in enumerate(responses) if i != 2)


def test_bad_audio_is_4xx_naming_the_input(server: MLServerProcess) -> None:
    half = clip(0.5, 0)
    nan = half.copy()
    nan[10] = np.nan
    cases = [
        (audio_payload(clip(0.5, 0, rate=8000), rate=8000), 400, "'sampling_rate'",
         "8000 Hz but the model needs 16000 Hz"),
        ({"inputs": [v2_input("audio", "FP64", half.tolist(), [1, half.size])],
          "parameters": {"sampling_rate": RATE}}, 400, "'audio'", "expected FP32"),
        ({"inputs": [v2_input("audio", "FP32", [], [1, 0])], "parameters": {"sampling_rate": RATE}},
         400, "'audio'", ""),
        ({"inputs": [v2_input("audio", "FP32", [0.0] * 8, [1, 2, 4])],
          "parameters": {"sampling_rate": RATE}}, 400, "'audio'", "expected shape"),
        ({"inputs": [v2_input("audio", "FP32", half.tolist(), [1, half.size])]}, 400,
         "'sampling_rate'", "required"),
        # PayloadTooLargeError carries 413; the MLServer adapter currently answers 400.
        (audio_payload(clip(4.0, 0)), (400, 413), "'audio'", "limit is 3 s"),
    ]  # fmt: skip
    for payload, status, name, message in cases:
        resp = server.infer("asr", payload)
        assert resp.status_code in np.atleast_1d(status), resp.text
        assert name in resp.text and message in resp.text, resp.text
    # NaN over REST: JSON's NaN literal reaches the component, which rejects it by name.
    body = json.dumps(audio_payload(nan))
    resp = httpx.post(f"{server.url}/v2/models/asr/infer", content=body, timeout=60,
                      headers={"content-type": "application/json"})  # fmt: skip
    assert 400 <= resp.status_code < 500, resp.text
    if resp.status_code == 400:
        assert "'audio' row 0" in resp.text and "NaN" in resp.text
    assert_ready(server, "asr")


def test_resample_option(server: MLServerProcess) -> None:
    resp = server.infer("asr-resample", audio_payload(clip(1.0, 0, rate=8000), rate=8000))
    assert len(outputs(resp)["transcript"]) == 1
    assert resp.json()["parameters"]["resampled_from"] == 8000


@pytest.mark.parametrize("rate", [float("inf"), 16000.9, "16k"])
def test_a_sampling_rate_that_is_no_whole_number_is_refused_by_name(
    s2t_dir: Path, rate: object
) -> None:
    """JSON's Infinity (which the body parser reads) was an OverflowError, a 500; 16000.9 was
    truncated to 16000 without a word."""
    comp = SpeechRecognizer(ComponentSettings(model_uri=str(s2t_dir), warmup=False))
    comp.start()
    with pytest.raises(InputError) as info:
        comp.prepare({"audio": clip(0.5, 0)[None, :]}, {"sampling_rate": rate})
    assert info.value.input_name == "sampling_rate"
