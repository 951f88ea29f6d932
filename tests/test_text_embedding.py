"""Text embeddings: a tiny checkpoint and the REAL all-MiniLM-L6-v2 behind `mlserver start`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers.modeling_outputs import BaseModelOutput

from infergraph.checkpoints.text_embedding import build_text_embedder
from infergraph.checkpoints.tokenizers import minilm_dir
from infergraph.components.base import ComponentSettings
from infergraph.components.text import length_chunks
from infergraph.components.text_embedding import TextEmbedder
from infergraph.components.torchscript import TracedEncoder, trace_encoder
from infergraph.errors import SettingsError
from tests.servers import MLServerProcess, mlserver, triton_grpc, v2_input, write_model
from tests.text_fixtures import (
    assert_ready,
    burst,
    grpc_infer,
    max_batch_size,
    outputs,
    parameter,
    raw_bytes_input,
    text_input,
)

pytestmark = pytest.mark.slow

GUITAR = "A man is playing a guitar."
GUITAR_TOO = "Someone plays the guitar."
STOCKS = "The stock market fell sharply today."
TEXTS = [GUITAR, GUITAR_TOO, STOCKS, "Le chat dort.", "ok", "Paris is the capital of France."]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_text_embedder(tmp_path_factory.mktemp("ckpt") / "embed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[MLServerProcess]:
    models = tmp_path_factory.mktemp("models")
    write_model(models, "embed", "text-embedding", str(tiny_dir),
                max_batch_size=32, max_batch_time=0.05)  # fmt: skip
    write_model(models, "minilm", "text-embedding", str(minilm_dir()), max_batch_size=8,
                max_batch_time=0.01)  # fmt: skip
    write_model(models, "minilm2", "text-embedding", str(minilm_dir()), max_batch_size=2,
                instances=2)  # fmt: skip
    with mlserver(models) as proc:
        yield proc


def test_real_minilm_weights_in_process() -> None:
    comp = TextEmbedder(ComponentSettings(model_uri=str(minilm_dir()), device="cpu"))
    comp.start()
    emb = comp.predict({"text": np.array([t.encode() for t in TEXTS[:3]], dtype=object)})
    vectors = emb.outputs["embedding"]
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert cosine(vectors[0], vectors[1]) > 0.5


def test_length_chunks_split_only_where_padding_costs_more_than_a_pass() -> None:
    # Two short rows and two long ones: padding the short to 40 wastes 70 tokens > a pass of 10.
    assert length_chunks([40, 5, 38, 5], 10.0) == [[1, 3], [2, 0]]
    # Same rows when a pass costs more than the padding it saves: one pass, order kept.
    assert length_chunks([40, 5, 38, 5], 100.0) == [[1, 3, 2, 0]]
    assert length_chunks([40, 5, 38, 5], None) == [[0, 1, 2, 3]]
    # Equal lengths never split, however cheap a pass.
    assert length_chunks([7] * 5, 0.0) == [[0, 1, 2, 3, 4]]
    lengths = [11, 12, 15, 15, 16, 17, 18, 19] * 4
    chunks = length_chunks(lengths, 32.0)
    assert sorted(i for c in chunks for i in c) == list(range(32))

    def cost(parts: list[list[int]]) -> float:
        return sum(len(c) * max(lengths[i] for i in c) + 32.0 for c in parts)

    assert cost(chunks) < cost([list(range(32))])


def test_split_passes_give_the_vectors_of_one_pass() -> None:
    texts = [t.encode() for t in [*TEXTS, " ".join(TEXTS * 4)]]
    vectors = {}
    for cost in (None, 0.0):
        comp = TextEmbedder(
            ComponentSettings(
                model_uri=str(minilm_dir()), device="cpu", options={"pass_cost_tokens": cost}
            )
        )
        comp.start()
        vectors[cost] = comp.predict({"text": np.array(texts, dtype=object)}).outputs["embedding"]
    assert np.allclose(vectors[None], vectors[0.0], atol=1e-5)
    with pytest.raises(SettingsError, match="pass_cost_tokens"):
        TextEmbedder(
            ComponentSettings(
                model_uri=str(minilm_dir()), device="cpu", options={"pass_cost_tokens": "inf"}
            )
        ).start()


def minilm(**options: object) -> TextEmbedder:
    settings = ComponentSettings(model_uri=str(minilm_dir()), device="cpu", options=options)
    comp = TextEmbedder(settings)
    comp.start()
    return comp


def test_vectors_are_sentence_transformers_own() -> None:
    """What a user compares with: `SentenceTransformer.encode` on the same checkpoint, for a
    batch of mixed lengths, normalised or not, and a row truncated to the model's limit."""
    reference = SentenceTransformer(str(minilm_dir()), device="cpu")
    long_text = " ".join(TEXTS * 40)  # past all-MiniLM-L6-v2's 256 tokens
    texts = [*TEXTS, long_text]
    for normalize in (True, False):
        comp = minilm(torchscript=False, normalize=normalize, truncate=True)
        got = comp.predict({"text": np.array([t.encode() for t in texts], dtype=object)})
        want = reference.encode(texts, normalize_embeddings=normalize, convert_to_numpy=True)
        assert got.parameters["truncated"] == [len(texts) - 1]
        assert np.allclose(got.outputs["embedding"], want, atol=1e-5)


def test_the_forward_pass_runs_the_token_ids_of_prepare() -> None:
    """A text is tokenised once, where its request is prepared: the forward thread pads the
    rows' token ids, as text classification does, instead of tokenising the batch again
    (`SentenceTransformer.encode` would)."""
    comp = minilm()
    assert comp.from_token_ids
    calls: list[int] = []
    preprocess = comp.model.preprocess
    comp.model.preprocess = lambda texts, **kw: calls.append(len(texts)) or preprocess(texts, **kw)
    got = comp.predict({"text": np.array([t.encode() for t in TEXTS], dtype=object)})
    assert calls == []
    want = SentenceTransformer(str(minilm_dir()), device="cpu").encode(TEXTS)
    assert np.allclose(got.outputs["embedding"], want, atol=1e-5)


def test_a_checkpoint_with_a_default_prompt_embeds_the_prompted_text(
    tmp_path: Path, tiny_dir: Path
) -> None:
    """A checkpoint whose config names a default prompt ("query: " before every text) is
    embedded as `encode` embeds it: prepare's token ids lack the prompt, so this model runs
    the sentence-transformers path and the log says why."""
    model = SentenceTransformer(str(tiny_dir), device="cpu")
    model.prompts = {"query": "query: "}
    model.default_prompt_name = "query"
    model.save(str(tmp_path / "prompted"))
    comp = TextEmbedder(ComponentSettings(model_uri=str(tmp_path / "prompted"), device="cpu"))
    comp.start()
    assert not comp.from_token_ids
    got = comp.predict({"text": np.array([t.encode() for t in TEXTS], dtype=object)})
    want = model.encode(TEXTS, normalize_embeddings=True)
    assert np.allclose(got.outputs["embedding"], want, atol=1e-5)
    unprompted = model.encode(TEXTS, prompt="", normalize_embeddings=True)
    assert not np.allclose(got.outputs["embedding"], unprompted, atol=1e-3)


def test_traced_encoder_gives_the_eager_vectors() -> None:
    traced, eager = minilm(), minilm(torchscript=False)
    assert isinstance(traced.model[0].auto_model, TracedEncoder)
    assert not isinstance(eager.model[0].auto_model, TracedEncoder)
    # Batch sizes and lengths the trace never saw: one short text, a mixed batch, a long one.
    batches = [[GUITAR], TEXTS, [*TEXTS, " ".join(TEXTS * 6)]]
    for texts in batches:
        array = np.array([t.encode() for t in texts], dtype=object)
        got = traced.predict({"text": array}).outputs["embedding"]
        want = eager.predict({"text": array}).outputs["embedding"]
        assert got.shape == want.shape == (len(texts), 384)
        assert np.allclose(got, want, atol=1e-5)
    with pytest.raises(SettingsError, match="torchscript"):
        minilm(torchscript="sometimes")


class ValueBranchEncoder(torch.nn.Module):
    """An encoder whose path depends on its input's values: a trace freezes one branch."""

    config = None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_dict: bool = True
    ) -> BaseModelOutput:
        hidden = input_ids.float().unsqueeze(-1) * attention_mask.unsqueeze(-1)
        if bool(input_ids.sum() > 10):
            hidden = hidden * 2
        return BaseModelOutput(last_hidden_state=hidden)


def test_a_trace_that_disagrees_with_eager_is_refused() -> None:
    def features(ids: list[list[int]]) -> dict[str, torch.Tensor]:
        tensor = torch.tensor(ids)
        return {"input_ids": tensor, "attention_mask": torch.ones_like(tensor)}

    encoder = ValueBranchEncoder()
    traced, why = trace_encoder(encoder, features([[1, 2]]), [features([[1, 2, 3]])])
    assert isinstance(traced, TracedEncoder) and why == "traced"
    traced, why = trace_encoder(encoder, features([[1, 2]]), [features([[9, 9, 9]])])
    assert traced is None
    assert "differs from eager" in why and "(1, 3)" in why


def test_real_minilm_weights_through_mlserver(server: MLServerProcess) -> None:
    resp = server.infer("minilm", {"inputs": [text_input("text", TEXTS[:3])]})
    vectors = np.array(outputs(resp)["embedding"], dtype=np.float32).reshape(3, 384)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_tiny_embeddings_and_normalize_option(server: MLServerProcess) -> None:
    resp = server.infer("embed", {"inputs": [text_input("text", TEXTS)]})
    meta = resp.json()["outputs"][0]
    assert meta["datatype"] == "FP32" and meta["shape"] == [len(TEXTS), 32]
    vectors = np.array(outputs(resp)["embedding"]).reshape(len(TEXTS), -1)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    raw = server.infer(
        "embed", {"inputs": [text_input("text", TEXTS[:1])], "parameters": {"normalize": False}}
    )
    raw_vector = np.array(outputs(raw)["embedding"])
    assert not np.isclose(np.linalg.norm(raw_vector), 1.0, atol=1e-3)
    assert np.allclose(raw_vector / np.linalg.norm(raw_vector), vectors[0], atol=1e-4)


def test_grpc_embedding(server: MLServerProcess) -> None:
    rest = np.array(
        outputs(server.infer("minilm", {"inputs": [text_input("text", [GUITAR])]}))["embedding"]
    )
    got = grpc_infer(server, "minilm", [("text", "BYTES", [1], [GUITAR.encode()])])
    assert got["embedding"].shape == (1, 384)
    assert np.allclose(got["embedding"].reshape(-1), rest, atol=1e-5)


def test_concurrent_requests_are_batched_each_gets_its_own(server: MLServerProcess) -> None:
    solo = [
        np.array(outputs(server.infer("embed", {"inputs": [text_input("text", [t])]}))["embedding"])
        for t in TEXTS
    ]
    responses = burst(server, "embed", [{"inputs": [text_input("text", [t])]} for t in TEXTS])
    for expected, resp in zip(solo, responses, strict=True):
        assert np.allclose(outputs(resp)["embedding"], expected, atol=1e-4)
    assert max_batch_size(responses) > 1


def test_bad_request_in_a_burst_fails_alone(server: MLServerProcess) -> None:
    payloads = [{"inputs": [text_input("text", [t])]} for t in TEXTS]
    payloads.insert(1, {"inputs": [raw_bytes_input("text", [b"\xff"])]})
    payloads.append({"inputs": [text_input("text", [GUITAR])], "parameters": {"normalize": False}})
    responses = burst(server, "embed", payloads)
    assert responses[1].status_code == 400 and "'text'" in responses[1].text
    unnormalised = np.array(outputs(responses[-1])["embedding"])
    assert not np.isclose(np.linalg.norm(unnormalised), 1.0, atol=1e-3)
    assert all(r.status_code == 200 for i, r in enumerate(responses) if i != 1)


def test_bad_inputs_are_400_naming_the_input(server: MLServerProcess) -> None:
    cases = [
        ({"inputs": [raw_bytes_input("text", [b"fine", b"\xc3\x28"])]}, "row 1", "utf-8"),
        ({"inputs": [v2_input("text", "FP32", [0.5])]}, "'text'", "expected BYTES"),
        ({"inputs": [text_input("text", ["word " * 300])]}, "'text'", "the model's limit is 256"),
    ]
    for payload, where, message in cases:
        resp = server.infer("embed", payload)
        assert resp.status_code == 400, resp.text
        assert "'text'" in resp.text and where in resp.text and message in resp.text, resp.text
    assert_ready(server, "embed")


def test_truncation_when_allowed_is_reported(server: MLServerProcess) -> None:
    resp = server.infer(
        "minilm",
        {"inputs": [text_input("text", [GUITAR, "word " * 300])], "parameters": {"truncate": True}},
    )
    assert np.array(outputs(resp)["embedding"]).size == 2 * 384
    assert parameter(resp, "truncated") == [1]


def test_two_instances_answer_the_vectors_of_one(server: MLServerProcess) -> None:
    """Two copies of MiniLM, each with its own forward thread, under a burst: every caller
    gets its own text's vector, as one instance computes it, and Triton's configuration
    (REST and gRPC, read by tritonclient) says how many copies run."""
    many = TEXTS * 4
    payloads = [{"inputs": [text_input("text", [t])]} for t in many]
    expected = {
        t: np.array(
            outputs(server.infer("minilm", {"inputs": [text_input("text", [t])]}))["embedding"]
        )
        for t in TEXTS
    }
    responses = burst(server, "minilm2", payloads)
    for text, resp in zip(many, responses, strict=True):
        assert np.allclose(outputs(resp)["embedding"], expected[text], atol=1e-5)
    assert 1 <= max_batch_size(responses) <= 2  # the node's limit holds across both copies
    rest = httpx.get(f"{server.url}/v2/models/minilm2/config", timeout=30).json()
    assert rest["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    grpc = triton_grpc(server, "minilm2")["config"]  # tritonclient, in its own interpreter
    assert grpc["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
