"""Tensors the local router writes itself travel as the nodes' own answers do: each float in
its own precision's shortest text (`tensors.v2json.encode_json_array`, docs/protocols.md).

Node answers already did, and the router passes their numbers on unchanged. What the router
builds itself went through the list form, the text of each FP32's float64 widening: the
built-in combiner's scores in an ensemble's answer, and a binary request's inputs on their
way to the first nodes (`0.10000000149011612` for 0.1: a body 1.8 times as long). They now
stay flat arrays, which the router's bodies write through `serving.binary.json_bytes`.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from infergraph.graph.plan import load_plan
from infergraph.runner.executor import combine_scores
from infergraph.runner.local import run_graph
from infergraph.serving.binary import HEADER, json_bytes, to_json_tensor
from infergraph.tensors import from_tensor, to_tensor

# A float64 widening of an FP32 is written with 16-17 significant digits.
WIDENED = re.compile(rb"\d\.\d{12,}")


def member(scores: list[list[float]]) -> dict[str, object]:
    return dict(to_tensor("scores", np.array(scores, np.float32)))


def test_the_built_in_combiners_scores_are_written_short_and_read_back_exact() -> None:
    feed = {
        "small.scores": member([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]]),
        "big.scores": member([[0.2, 0.6, 0.2], [0.9, 0.05, 0.05]]),
    }
    combined = combine_scores(feed, "average")
    body = json_bytes(combined)
    assert not WIDENED.search(body), body
    members = np.float32([[[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]], [[0.2, 0.6, 0.2], [0.9, 0.05, 0.05]]])
    expected = members.mean(axis=0)  # as the combiner computes it, in FP32
    read = from_tensor(orjson.loads(body)["scores"])
    assert read.dtype == np.float32
    assert read.view(np.uint32).tolist() == expected.astype(np.float32).view(np.uint32).tolist()


def test_binary_inputs_reach_the_nodes_in_short_text_and_the_same_bits() -> None:
    values = np.random.default_rng(3).random((4, 64), dtype=np.float32)
    arrived = {
        "name": "x",
        "datatype": "FP32",
        "shape": [4, 64],
        "data": values,
        "parameters": {"binary_data_size": values.nbytes},
    }
    sent = to_json_tensor(arrived)
    body = json_bytes(sent)
    assert not WIDENED.search(body), body[:200]
    read = from_tensor(orjson.loads(body))
    assert read.view(np.uint32).tolist() == values.view(np.uint32).tolist()
    assert "binary_data_size" not in sent["parameters"]


def test_binary_bytes_inputs_still_travel_as_base64() -> None:
    image = np.array([b"\x89PNG\r\n\x1a\n\xff"], dtype=object)
    sent = to_json_tensor({"name": "image", "datatype": "BYTES", "shape": [1], "data": image})
    assert sent["parameters"] == {"content_type": "base64"}
    assert from_tensor(sent).tolist() == [b"\x89PNG\r\n\x1a\n\xff"]


ENSEMBLE = """\
apiVersion: infergraph.io/v1alpha1
kind: InferenceGraph
metadata: {name: vote}
spec:
  inputs:
    - {name: scores, datatype: FP32, shape: [-1, -1]}
  nodes:
    - {name: left, family: identity}
    - {name: right, family: identity}
  graph:
    ensemble:
      - node: left
      - node: right
    combine: {method: average, tensor: scores}
"""


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_an_ensembles_answer_through_the_real_router_is_short_and_exact(
    tmp_path: Path, binary: bool
) -> None:
    """Two identity members on a real MLServer, averaged by the router's built-in combiner;
    the request as JSON and as the binary extension (whose inputs the router forwards)."""
    graph_file = tmp_path / "vote.yaml"
    graph_file.write_text(ENSEMBLE)
    scores = np.float32([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    tensor = {"name": "scores", "datatype": "FP32", "shape": [2, 3]}

    async def ask() -> bytes:
        async with run_graph(load_plan(graph_file), workdir=tmp_path / "work") as running:
            if binary:
                head = orjson.dumps(
                    {"inputs": [{**tensor, "parameters": {"binary_data_size": scores.nbytes}}]}
                )
                body, headers = head + scores.tobytes(), {HEADER: str(len(head))}
            else:
                body, headers = (
                    orjson.dumps({"inputs": [{**tensor, "data": scores.ravel().tolist()}]}),
                    {},
                )
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    running.infer_url, content=body, headers=headers, timeout=60
                )
        assert answer.status_code == 200, answer.text
        return answer.content

    body = asyncio.run(ask())
    assert not WIDENED.search(body), body
    outputs = {t["name"]: t for t in orjson.loads(body)["outputs"]}
    assert (
        from_tensor(outputs["scores"]).view(np.uint32).tolist() == scores.view(np.uint32).tolist()
    )
