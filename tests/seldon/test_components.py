"""InfergraphComponent under the real `seldon-core-microservice`, over REST, per unit type.

Every unit type gets real Seldon-protocol requests (ndarray, strData, jsonData, binData);
bad input must answer 4xx and leave the service up. Then a cascade and an ensemble are
rendered to a SeldonDeployment and driven unit by unit in the order the v1 executor calls
them (transform-input/predict, route, children, aggregate, transform-output), each unit a
separate microservice started with the parameters the rendered graph gives it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import requests

from infergraph.cost.pricing import parse_quantity
from infergraph.graph.model_settings import RUNTIME_IMPLEMENTATION
from infergraph.graph.plan import parse_graph
from infergraph.render import EXAMPLE_STORAGE, RenderOptions, render
from infergraph.render.common import cache_env
from tests.engines.seldon_v1 import ChainError, chained, executor_rest_timeout_s
from tests.servers import free_port, start_until_bound, wait_ready, wait_until

REPO = Path(__file__).resolve().parents[2]
CLASS = "infergraph.serving.seldon_component.InfergraphComponent"
OPTIONS = RenderOptions(storage_uri=EXAMPLE_STORAGE)
PATHS = {
    "MODEL": "/api/v1.0/predictions",
    "TRANSFORMER": "/transform-input",
    "OUTPUT_TRANSFORMER": "/transform-output",
    "ROUTER": "/route",
    "COMBINER": "/aggregate",
}


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str = ""

    def post(self, path: str, body: Any, timeout: float = 120) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start(
    name: str,
    service_type: str,
    params: dict[str, Any],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Service:
    """Run seldon-core-microservice for one unit with graph-style typed parameters; `env`
    adds to its environment as the rendered container's does (e.g. GUNICORN_WORKERS)."""
    return start_until_bound(lambda: _start_unit(name, service_type, params, workdir, env))


def _start_unit(
    name: str,
    service_type: str,
    params: dict[str, Any],
    workdir: Path,
    env: dict[str, str] | None,
) -> Service:
    """One start of the unit on fresh ports, returned once it answers."""
    exe = shutil.which("seldon-core-microservice", path=str(Path(sys.executable).parent))
    assert exe, "seldon-core-microservice not found next to this interpreter"
    http, grpc, metrics = free_port(), free_port(), free_port()
    typed = []
    for key, value in params.items():
        if isinstance(value, bool):
            typed.append({"name": key, "type": "BOOL", "value": str(value).lower()})
        elif isinstance(value, int):
            typed.append({"name": key, "type": "INT", "value": str(value)})
        elif isinstance(value, str):
            typed.append({"name": key, "type": "STRING", "value": value})
        else:
            typed.append({"name": key, "type": "STRING", "value": json.dumps(value)})
    log = workdir / f"{name}-{http}.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PREDICTIVE_UNIT_ID": name,
        **(env or {}),
    }
    service_arg = {"OUTPUT_TRANSFORMER": "TRANSFORMER"}.get(service_type, service_type)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                exe,
                CLASS,
                "--service-type",
                service_arg,
                "--http-port",
                str(http),
                "--grpc-port",
                str(grpc),
                "--metrics-port",
                str(metrics),
                "--parameters",
                json.dumps(typed),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(
        name, f"http://127.0.0.1:{http}", proc, log, f"http://127.0.0.1:{metrics}/metrics"
    )
    ready(service, "/health/ping")
    # The metrics and gRPC servers are processes of their own (seldon_core/microservice.py
    # start_servers), and one that lost its port says so in the log only once it tried, which
    # can be after REST answers: the start counts once all three ports serve.
    metrics_server = f"http://127.0.0.1:{metrics}"
    ready(service, "/metrics", url=metrics_server, what=f"{name}'s metrics server")
    if (env or {}).get("GRPC_WORKERS") == "0":  # no gRPC server (microservice.py:650)
        return service
    return serving_grpc(service, grpc)


def ready(
    service: Service, path: str, timeout: float = 240, url: str = "", what: str = ""
) -> Service:
    """`service` once `path` of `url` (its REST server's by default) answers 200
    (tests.servers.wait_ready); stopped if it never does."""
    try:
        wait_ready(
            url or service.url, service.process, service.output, timeout, what or service.name, path
        )
    except TimeoutError:
        stop(service)
        raise
    return service


def serving_grpc(service: Service, port: int, timeout: float = 60) -> Service:
    """`service` once its gRPC server completes an HTTP/2 handshake on `port`: a socket
    another process holds there may accept connections, but never speaks gRPC."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    handshake = grpc.channel_ready_future(channel)  # one watcher: it keeps trying to connect

    def handshakes() -> bool:
        try:
            handshake.result(timeout=1)
        except grpc.FutureTimeoutError:
            return False
        return True

    try:
        wait_until(handshakes, service.process, service.output, timeout, f"{service.name} gRPC")
    except TimeoutError:
        stop(service)
        raise
    finally:
        handshake.cancel()  # before the close, or its thread polls a closed channel
        channel.close()
    return service


def start_mlserver(name: str, env: dict[str, str], workdir: Path) -> Service:
    """A `protocol: v2` unit: MLServer configured only by its container's environment.

    With no model-settings.json in its folder MLServer builds the model from MLSERVER_MODEL_*
    (mlserver/repository/repository.py). MLServer conflicts with seldon-core, so it runs from
    the main virtualenv, as it runs from its own image in the cluster.
    """
    return start_until_bound(lambda: _start_v2_unit(name, env, workdir))


def _start_v2_unit(name: str, env: dict[str, str], workdir: Path) -> Service:
    """One start of the v2 unit's MLServer on fresh ports, returned once it answers."""
    exe = REPO / ".venv" / "bin" / "mlserver"
    assert exe.exists(), "protocol v2 units need the main virtualenv (make install)"
    http, grpc, metrics = free_port(), free_port(), free_port()
    folder = workdir / f"{name}-{http}"
    folder.mkdir()
    ports = {
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(http),
        "MLSERVER_GRPC_PORT": str(grpc),
        "MLSERVER_METRICS_PORT": str(metrics),
        "MLSERVER_METRICS_DIR": str(folder),
    }
    log = folder / "mlserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "start", str(folder)],
            cwd=folder,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env, **ports},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ready(Service(name, f"http://127.0.0.1:{http}", proc, log), "/v2/health/ready", 300)


def stop(service: Service) -> None:
    if service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGTERM)
        try:
            service.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()


class Pool:
    """Microservices shared by the tests of this module, keyed by unit and parameters."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: dict[str, Service] = {}

    def get(self, name: str, service_type: str, params: dict[str, Any]) -> Service:
        key = json.dumps([name, service_type, params], sort_keys=True)
        if key not in self.services:
            self.services[key] = start(name, service_type, params, self.workdir)
        return self.services[key]

    def mlserver(self, name: str, env: dict[str, str]) -> Service:
        key = json.dumps([name, "mlserver", env], sort_keys=True)
        if key not in self.services:
            self.services[key] = start_mlserver(name, env, self.workdir)
        return self.services[key]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Every unit stopped (SIGSTOP to its process group) for the block: a call then waits
        for an answer that cannot come, as a hung unit's caller does, whatever this
        machine's speed; resumed (SIGCONT) on the way out."""
        groups = [s.process.pid for s in self.services.values() if s.process.poll() is None]
        for group in groups:
            os.killpg(group, signal.SIGSTOP)
        try:
            yield
        finally:
            for group in groups:
                os.killpg(group, signal.SIGCONT)

    def close(self) -> None:
        for service in self.services.values():
            stop(service)


VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "movie", "was", "great", "terrible", "good", "bad", "plot", "and", "a", "i",
    "loved", "hated", "it", "hello", "world", "##s", "##ed", ".", ",", "!",
]  # fmt: skip


def classifier_params(node: str, checkpoint: Path) -> dict[str, Any]:
    return {
        "node": node,
        "family": "text-classification",
        "model_uri": str(checkpoint),
        "device": "cpu",
        "max_batch_size": 4,
    }


def route_of(body: dict[str, Any]) -> int:
    """The child index, from `ndarray` or `tensor` form (the executor reads both)."""
    data = body["data"]
    if "ndarray" in data:
        return int(data["ndarray"][0][0])
    return int(data["tensor"]["values"][0])


def tensor(body: dict[str, Any], name: str) -> dict[str, Any]:
    assert "jsonData" in body, body
    return body["jsonData"][name]


# -- each unit type over REST ------------------------------------------------------------------
def test_model_accepts_every_seldon_payload_form(pool: Pool, tiny_classifier: Path) -> None:
    svc = pool.get("clf", "MODEL", classifier_params("clf", tiny_classifier))
    forms = {
        "strData": {"strData": "the movie was great"},
        "ndarray": {"data": {"ndarray": ["the movie was great", "i hated it"]}},
        "jsonData": {"jsonData": {"text": ["the plot was bad", "hello world"]}},
        "binData": {"binData": base64.b64encode(b"i loved it").decode()},
    }
    rows = {"strData": 1, "ndarray": 2, "jsonData": 2, "binData": 1}
    for form, body in forms.items():
        response = svc.post(PATHS["MODEL"], body)
        assert response.status_code == 200, (form, response.text)
        out = response.json()
        label = tensor(out, "clf.label")
        assert label["datatype"] == "BYTES" and label["shape"] == [rows[form]], form
        assert set(label["data"]) <= {"NEGATIVE", "POSITIVE"}
        scores = tensor(out, "scores")
        assert scores["shape"] == [rows[form], 2]
        assert abs(sum(scores["data"][:2]) - 1.0) < 1e-4
        # The request's tensors travel on for downstream units.
        assert tensor(out, "request.text")["shape"] == [rows[form]]
        tags = out["meta"]["tags"]
        assert tags["clf.inference_ms"] >= 0 and "clf.preprocess_ms" in tags


def rendered_unit(
    instances: int, memory: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """Node `clf`'s container as `infergraph render --engine seldon-v1` writes it: a Seldon
    protocol unit (the second step renames its input, so the chain is not `protocol: v2`)."""
    node = {
        "name": "clf",
        "family": "text-classification",
        "modelUri": "org/clf",
        "resources": {"cpu": "2", "memory": memory},
        "instances": instances,
    }
    doc = {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "workers", "annotations": annotations or {}},
        "spec": {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "nodes": [node, {"name": "post", "family": "identity"}],
            "graph": {
                "sequence": [{"node": "clf"}, {"node": "post", "inputs": {"x": "clf.scores"}}]
            },
        },
    }
    sdep = render(parse_graph(doc), "seldon-v1", OPTIONS)[0]
    specs = sdep["spec"]["predictors"][0]["componentSpecs"]
    return next(c for s in specs for c in s["spec"]["containers"] if c["name"] == "clf")


@pytest.mark.parametrize(("grpc", "copies"), [("true", 3), ("false", 2)])
def test_a_unit_loads_as_many_copies_as_its_memory_is_sized_for(
    tmp_path: Path, tiny_classifier: Path, grpc: str, copies: int
) -> None:
    """A node of `instances: 2` renders as GUNICORN_WORKERS=2 with half the threads each
    (render/seldon_v1.py): started with the rendered environment, the real microservice
    forks two REST workers that each load a copy and answer concurrent requests, and its gRPC
    worker loads one more unless the graph turns it off (`infergraph.io/seldon-v1-grpc`). The
    rendered memory holds exactly the copies it loads: the node's memory per instance, once
    per loading process."""
    unit = rendered_unit(2, "2Gi", {"infergraph.io/seldon-v1-grpc": grpc})
    rendered_env = {e["name"]: e["value"] for e in unit["env"] if "value" in e}
    env = {k: rendered_env[k] for k in ("GUNICORN_WORKERS", "GRPC_WORKERS", "OMP_NUM_THREADS")}
    assert env["GUNICORN_WORKERS"] == "2" and env["OMP_NUM_THREADS"] == "1"
    per_copy = 2**30  # 2Gi over two instances
    sized_for = round(parse_quantity(unit["resources"]["limits"]["memory"]) / per_copy)
    svc = start("clf", "MODEL", classifier_params("clf", tiny_classifier), tmp_path, env)
    try:
        bodies = [{"strData": text} for text in ("the movie was great", "i hated it") * 8]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: svc.post(PATHS["MODEL"], body), bodies))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert {tensor(a.json(), "clf.label")["shape"][0] for a in answers} == {1}
        assert "'workers': 2" in svc.log.read_text(errors="replace")  # gunicorn's config

        def loads() -> int:
            return svc.log.read_text(errors="replace").count("text-classification loaded from")

        # The second REST worker may still be loading when the first answers.
        deadline = time.monotonic() + 120
        while loads() < sized_for:
            assert time.monotonic() < deadline, (sized_for, svc.output())
            time.sleep(0.5)
        time.sleep(3)  # every process has started by now: none loads a copy more
        assert loads() == sized_for == copies, svc.output()
    finally:
        stop(svc)


def test_bad_input_is_4xx_and_the_service_stays_up(pool: Pool, tiny_classifier: Path) -> None:
    svc = pool.get("clf", "MODEL", classifier_params("clf", tiny_classifier))
    bad = [
        {"jsonData": {"question": ["wrong input name"]}},
        {"jsonData": {"text": {"datatype": "BYTES", "shape": [3], "data": ["only one"]}}},
        {"jsonData": {"text": {"shape": [1]}}},
        {"data": {"ndarray": []}},
        {"jsonData": {}},
    ]
    for body in bad:
        response = svc.post(PATHS["MODEL"], body)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        status = response.json()["status"]
        assert status["reason"] == "MICROSERVICE_BAD_DATA"
        assert status["info"]
    missing = svc.post(PATHS["MODEL"], bad[0]).json()["status"]["info"]
    assert "input 'text'" in missing and "missing" in missing
    ok = svc.post(PATHS["MODEL"], {"strData": "still serving"})
    assert ok.status_code == 200
    assert svc.process.poll() is None


# Plain values numpy would change on the way in: seldon-core reads `ndarray` with np.array
# (2**63+5 as uint64, 1e300 as a float64 the unit made FP32 inf); `jsonData` lists reach the
# unit as the client sent them ([1, "a"] was read as the texts "1" and "a").
CHANGED_BY_NUMPY = [
    ({"data": {"ndarray": [2**63 + 5]}}, "input 'input'", "outside INT64's range"),
    ({"data": {"ndarray": [[1.0, 1e300]]}}, "input 'input'", "overflows FP32"),
    ({"jsonData": {"x": [2**64 - 1]}}, "input 'x'", "outside INT64's range"),
    ({"jsonData": {"x": [0.5, 2**63]}}, "input 'x'", "outside INT64's range"),
    ({"jsonData": {"x": [1, "a"]}}, "input 'x'", "mixed or nested data (int)"),
    ({"jsonData": {"x": [1e39]}}, "input 'x'", "overflows FP32"),
]


@pytest.mark.parametrize(("body", "named", "problem"), CHANGED_BY_NUMPY)
def test_plain_values_numpy_would_change_are_400_naming_the_input(
    pool: Pool, body: dict[str, Any], named: str, problem: str
) -> None:
    """They were answered changed: 2**63+5 as -9223372036854775803, 1e300 as inf, [1, "a"]
    as text (review finding 6); the V2 codecs refuse the same values."""
    svc = pool.get("echo-v1", "MODEL", {"node": "echo", "family": "identity"})
    response = svc.post(PATHS["MODEL"], body)
    assert response.status_code == 400, response.text
    status = response.json()["status"]
    assert status["reason"] == "MICROSERVICE_BAD_DATA"
    assert named in status["info"] and problem in status["info"], status
    assert svc.post(PATHS["MODEL"], {"data": {"ndarray": [[1.5, 2]]}}).status_code == 200


def series(text: str, name: str, **labels: str) -> float:
    """Sum of one Prometheus series over the labels not given (seldon adds worker_id, ...)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        have = dict(part.split("=", 1) for part in line[len(name) + 1 : line.index("}")].split(","))
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_request_parameters_travel_as_meta_tags(pool: Pool, tiny_classifier: Path) -> None:
    """As locally: a plain key reaches every unit, `<node>.<key>` only that node."""
    svc = pool.get("clf", "MODEL", classifier_params("clf", tiny_classifier))
    long_text = {"jsonData": {"text": ["the movie was great " * 40]}}  # over 64 tokens
    answers = {
        "none": svc.post(PATHS["MODEL"], long_text),
        "plain": svc.post(PATHS["MODEL"], {**long_text, "meta": {"tags": {"truncate": True}}}),
        "mine": svc.post(PATHS["MODEL"], {**long_text, "meta": {"tags": {"clf.truncate": True}}}),
        "other": svc.post(PATHS["MODEL"], {**long_text, "meta": {"tags": {"qa.truncate": True}}}),
    }
    codes = {k: r.status_code for k, r in answers.items()}
    assert codes["plain"] == codes["mine"] == 200, answers["plain"].text
    assert 400 <= codes["none"] < 500 and codes["other"] == codes["none"], codes
    assert "truncate" in answers["none"].json()["status"]["info"]
    # seldon-core passes the tags on in the answer, so the next unit sees them too.
    assert answers["plain"].json()["meta"]["tags"]["truncate"] is True


def test_unit_exports_the_runtime_metrics_the_v1_scalers_watch(
    pool: Pool, tiny_classifier: Path
) -> None:
    """Same names and labels as the MLServer runtime, via seldon-core's custom metrics."""
    svc = pool.get("meter", "MODEL", classifier_params("meter", tiny_classifier))
    assert svc.post(PATHS["MODEL"], {"strData": "fine"}).status_code == 200
    assert svc.post(PATHS["MODEL"], {"jsonData": {"question": ["x"]}}).status_code == 400
    too_big = {"jsonData": {"text": ["word " * 200_000]}}
    assert svc.post(PATHS["MODEL"], too_big).status_code == 413
    assert svc.post(PATHS["MODEL"], {"strData": "fine again"}).status_code == 200
    text = requests.get(svc.metrics_url, timeout=10).text
    assert series(text, "infergraph_requests_total", model="meter", outcome="ok") == 2
    # Failures are reported with the worker's next answered call (seldon-core's mechanism).
    assert series(text, "infergraph_requests_total", model="meter", outcome="bad_input") == 2
    assert "infergraph_inflight_requests{" in text and "infergraph_batch_queue_size{" in text
    assert series(text, "infergraph_inflight_requests", model="meter") == 0
    assert series(text, "infergraph_batch_queue_size", model="meter") == 0


def test_transformers_run_the_component_on_their_method(pool: Pool) -> None:
    params = {"node": "norm", "family": "identity"}
    for unit_type in ("TRANSFORMER", "OUTPUT_TRANSFORMER"):
        svc = pool.get(f"norm-{unit_type.lower().replace('_', '-')}", unit_type, params)
        body = {"data": {"ndarray": [[1.0, 2.0], [3.0, 4.0]]}}
        response = svc.post(PATHS[unit_type], body)
        assert response.status_code == 200, response.text
        out = response.json()
        assert tensor(out, "norm.input") == {
            "datatype": "FP32",
            "shape": [2, 2],
            "data": [1.0, 2.0, 3.0, 4.0],
        }


@pytest.mark.parametrize("lost", ["http", "grpc", "metrics", "v2-http"])
def test_a_unit_that_lost_a_port_race_starts_again_on_fresh_ports(
    lost: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI of d721713 went red when a v2 unit's MLServer found its HTTP port taken between the
    pick and the bind (tests.test_ports). seldon-core-microservice does not even exit then:
    gunicorn logs `Connection in use` and gives up, and the process waits on its gRPC child;
    a lost gRPC or metrics port leaves it serving REST without them. The starter reads the
    log, stops the unit and starts it again on fresh ports.
    """
    order = ["http", "grpc", "metrics"]
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # as the microservice binds
        taken.listen()
        port = int(taken.getsockname()[1])
        picks = iter([port if kind == lost.removeprefix("v2-") else None for kind in order])
        real = free_port
        monkeypatch.setattr(sys.modules[__name__], "free_port", lambda: next(picks, None) or real())
        if lost.startswith("v2-"):
            env = {
                "MLSERVER_MODEL_NAME": "echo",
                "MLSERVER_MODEL_IMPLEMENTATION": RUNTIME_IMPLEMENTATION,
                "MLSERVER_MODEL_EXTRA": json.dumps({"family": "identity"}),
                "MLSERVER_PARALLEL_WORKERS": "0",  # as rendered (render/seldon_v1.py)
            }
            unit = start_mlserver("echo", env, tmp_path)
            tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [0.5]}
            path, body = "/v2/models/echo/infer", {"inputs": [tensor]}
        else:
            unit = start("norm", "TRANSFORMER", {"node": "norm", "family": "identity"}, tmp_path)
            path, body = PATHS["TRANSFORMER"], {"data": {"ndarray": [[1.0, 2.0]]}}
    try:
        bound = {urlsplit(url).port for url in (unit.url, unit.metrics_url) if url}
        assert port not in bound, "kept the start on the taken port"
        assert len(list(tmp_path.glob("*.log")) + list(tmp_path.glob("*/mlserver.log"))) == 2
        answer = unit.post(path, body)
        assert answer.status_code == 200, answer.text
    finally:
        stop(unit)


def test_router_routes_on_upstream_confidence(pool: Pool) -> None:
    condition = {"tensor": "small.confidence", "op": "lt", "value": 0.8, "reduce": "any"}
    svc = pool.get("gate", "ROUTER", {"node": "gate", "condition": condition})
    unsure = {
        "jsonData": {"small.confidence": {"datatype": "FP32", "shape": [2], "data": [0.9, 0.6]}}
    }
    sure = {"jsonData": {"small.confidence": [0.95]}}
    assert route_of(svc.post(PATHS["ROUTER"], unsure).json()) == 0
    assert route_of(svc.post(PATHS["ROUTER"], sure).json()) == 1
    # Text conditions, as routing on a language label needs.
    lang = pool.get(
        "lang-gate",
        "ROUTER",
        {"node": "lang-gate", "condition": {"tensor": "lid.language", "op": "ne", "value": "en"}},
    )
    fr = {"jsonData": {"lid.language": ["fr"]}}
    en = {"jsonData": {"lid.language": ["en"]}}
    assert route_of(lang.post(PATHS["ROUTER"], fr).json()) == 0
    assert route_of(lang.post(PATHS["ROUTER"], en).json()) == 1
    # ndarray requests get an ndarray answer; tags say which way it went.
    answer = svc.post(PATHS["ROUTER"], {"data": {"ndarray": [0.1]}}).json()
    assert route_of(answer) == 1  # the condition tensor is absent: the condition does not hold
    bad = svc.post(PATHS["ROUTER"], {"jsonData": {"small.confidence": ["high"]}})
    assert bad.status_code == 400 and "numeric" in bad.json()["status"]["info"]


def test_combiner_averages_member_scores(pool: Pool) -> None:
    svc = pool.get("vote", "COMBINER", {"node": "vote", "family": "combiner", "method": "average"})

    def member(name: str, scores: list[list[float]]) -> dict[str, Any]:
        flat = [x for row in scores for x in row]
        data = {"datatype": "FP32", "shape": [len(scores), 2], "data": flat}
        return {"jsonData": {f"{name}.scores": data, "scores": data}}

    body = {"seldonMessages": [member("a", [[0.2, 0.8]]), member("b", [[0.6, 0.4]])]}
    response = svc.post(PATHS["COMBINER"], body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert tensor(out, "scores")["data"] == pytest.approx([0.4, 0.6])
    assert tensor(out, "label_index")["data"] == [1]
    assert "a.scores" in out["jsonData"] and "b.scores" in out["jsonData"]
    bad = svc.post(PATHS["COMBINER"], {"seldonMessages": [{"jsonData": {"x": [1.0]}}]})
    assert bad.status_code == 400 and "did not output 'scores'" in bad.json()["status"]["info"]


def _seldon_error(fn: Any) -> Any:
    """The SeldonMicroserviceException a unit method raises: its status and message."""
    from seldon_core.flask_utils import SeldonMicroserviceException

    with pytest.raises(SeldonMicroserviceException) as caught:
        fn()
    return caught.value


def _fp32(data: list[float], shape: list[int]) -> dict[str, Any]:
    return {"datatype": "FP32", "shape": shape, "data": data}


def test_merge_unit_answers_no_colliding_name_and_no_uncarried_tensor() -> None:
    """A `merge-N` COMBINER as rendered (`carry` given): it no longer echoes the request
    image, and members' outputs of the same bare name no longer overwrite each other as
    `scores` and `merge-0.scores` (the qualified `a.scores`, `b.scores` are carried)."""
    from infergraph.serving.seldon_component import InfergraphComponent

    unit = InfergraphComponent(node="merge-0", method="merge", carry=["a.scores", "b.scores"])
    unit.load()
    image = {"datatype": "BYTES", "shape": [1], "data": ["<a whole image>"]}
    a = {"request.image": image, "a.scores": _fp32([0.1, 0.9], [1, 2])}
    b = {"request.image": image, "b.scores": _fp32([0.7, 0.3], [1, 2])}
    a["scores"], b["scores"] = a["a.scores"], b["b.scores"]
    out = unit.aggregate([a, b])  # seldon-core hands each member's jsonData
    assert sorted(out) == ["a.scores", "b.scores"]
    assert out["a.scores"]["data"] == pytest.approx([0.1, 0.9])
    assert out["b.scores"]["data"] == pytest.approx([0.7, 0.3])


def test_combiner_blames_the_member_whose_scores_it_cannot_use() -> None:
    """The local router answers a member's unusable scores (a shape the others lack, or no
    scores at all) with a 502 naming the member; the v1 unit answered the client's 400."""
    from infergraph.serving.seldon_component import InfergraphComponent

    unit = InfergraphComponent(
        family="combiner",
        node="combine-0",
        method="average",
        inputs={"scores_0": "a.scores", "scores_1": "b.scores"},
        warmup=False,
    )
    unit.load()

    def member(name: str, shape: list[int]) -> dict[str, Any]:
        scores = _fp32([0.5] * (shape[0] * shape[1]), shape)
        return {f"{name}.scores": scores, "scores": scores}

    error = _seldon_error(lambda: unit.aggregate([member("a", [1, 3]), member("b", [1, 4])]))
    assert error.status_code == 502, error.message
    assert "node 'b'" in error.message and "shape [1, 4] differs from [1, 3]" in error.message
    lacking = {"a.label": _fp32([1.0], [1]), "label": _fp32([1.0], [1])}
    error = _seldon_error(lambda: unit.aggregate([lacking, member("b", [1, 3])]))
    assert error.status_code == 502 and "node 'a'" in error.message, error.message


@pytest.mark.parametrize("payload", [{"strData": "hello"}, {"data": {"ndarray": ["hello"]}}])
def test_router_reads_a_bare_client_payload_as_the_request_tensor_it_tests(
    payload: dict[str, Any],
) -> None:
    """A graph that starts with a `when` on `request.text`: a client's bare `strData` or
    `ndarray` is that tensor, as a MODEL unit names it after its input; it was decoded as
    `request.input`, so the condition never held and the router took `otherwise`."""
    from infergraph.serving.seldon_component import InfergraphComponent

    condition = {"tensor": "request.text", "op": "eq", "value": "hello", "reduce": "any"}
    unit = InfergraphComponent(family="gate", node="gate-0", condition=condition)
    unit.load()
    features = payload.get("strData") or np.array(payload["data"]["ndarray"])
    assert unit.route(features) == 0
    assert unit.route("bye" if "strData" in payload else np.array(["bye"])) == 1


# -- graphs as the v1 executor runs them --------------------------------------------------------
class UnitError(Exception):
    """A unit call that did not answer 200: its status and body (or the client's error)."""

    def __init__(self, status: int, body: bytes, url: str = "") -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.url = url  # the unit's URL, for an answer that was not 200


def dropped_route_error(error: UnitError) -> UnitError:
    """What the client gets for a ROUTER that answered non-200: `JSONRestClient.Route`
    returns `0, err` and drops the body (executor/api/rest/client.go:364-370), so
    `respondWithError` writes `CreateErrorPayload(err)` (server.go:94-112, client.go:53-65):
    jsonpb of `Status{Code: 500, Info: err.Error()}` (the zero `status` flag SUCCESS left
    out), with the httpStatusError's status (errors.go `httpStatusError.Error`)."""
    info = f"Internal service call from executor failed calling {error.url} status code "
    info += str(error.status)
    body = json.dumps({"status": {"code": 500, "info": info}}, separators=(",", ":"))
    return UnitError(error.status, body.encode(), error.url)


@dataclass
class Answer:
    """What the executor's client gets: status, Content-Type and body."""

    status: int
    content_type: str
    body: bytes


# The client's paths for `protocol: v2` (executor/api/rest/server.go:185-186): with a model
# name, or Seldon's nonstandard one without.
V2_CLIENT_PATH = re.compile(r"^/v2/models/(?:(?P<name>[^/]+)/)?infer$")


class Executor:
    """The v1 executor's walk (executor/predictor/predictor_process.go) over real services.

    `protocol: seldon`: each unit is `seldon-core-microservice` on its method's path and a
    unit's response is the next unit's request as it is. `protocol: v2`: each unit is the
    MLServer its container's environment configures, every method is `/v2/models/<name>/infer`
    and between units the response's `outputs` become the request's `inputs`, every other
    field (its `parameters` too) kept and the body re-encoded through Go's float64
    (executor/api/rest/client.go `modifyMethod`, `Chain`; executor/api/rest/kfserving.go:10-35;
    `tests.engines.seldon_v1.chain_kfserving`).

    `<name>` is the client URL's model name when it has one, else the unit's
    (predictor_process.go:87-92 `getModelName`; server.go:315-318 passes the URL's
    `{model}`): `serve` is the client's entry. Each unit call has the executor pod's
    `seldon.io/rest-timeout` (ms) as its http.Client timeout, none without it
    (client.go:98-125): none for the rendered executor in its own pod, whose template the
    operator gives no SeldonDeployment annotation (`tests.engines.seldon_v1.
    executor_rest_timeout_s`; operator/controllers/seldondeployment_engine.go:393-400).
    """

    def __init__(
        self, pool: Pool, sdep: dict[str, Any], storage: dict[str, Path] | None = None
    ) -> None:
        self.pool = pool
        predictor = sdep["spec"]["predictors"][0]
        self.graph = predictor["graph"]
        self.protocol = sdep["spec"].get("protocol", "seldon")
        self.containers = {
            c["name"]: c for spec in predictor["componentSpecs"] for c in spec["spec"]["containers"]
        }
        self.calls: list[str] = []
        self.timeout_s = executor_rest_timeout_s(sdep)
        self.model_name = ""  # the client URL's `{model}`, set by `serve`
        # The storage initializer's job: a unit's modelUri is copied to where it loads from.
        self.storage = storage or {}
        # Per unit, what the hub (or the storage initializer) would give it here, offline.
        self.checkpoints: dict[str, str | None] = {}

    def service(self, unit: dict[str, Any]) -> Service:
        if self.protocol == "v2":
            return self.v2_service(unit)
        params: dict[str, Any] = {}
        for p in unit.get("parameters", []):
            value: Any = p["value"]
            if p["type"] == "INT":
                value = int(value)
            elif p["type"] == "BOOL":
                value = value == "true"
            elif value.startswith(("{", "[")):
                value = json.loads(value)
            params[p["name"]] = value
        params["device"] = "cpu"
        if unit.get("modelUri") in self.storage:
            params["model_uri"] = str(self.storage[unit["modelUri"]])
        elif self.checkpoints.get(unit["name"]):
            params["model_uri"] = self.checkpoints[unit["name"]]
        return self.pool.get(unit["name"], unit["type"], params)

    def v2_service(self, unit: dict[str, Any]) -> Service:
        container = self.containers[unit["name"]]
        env = {e["name"]: e["value"] for e in container["env"]}
        for var in cache_env():  # the pod's emptyDir; here this machine's own caches
            env.pop(var["name"])
        # The operator names the model after its container (seldondeployment_controller.go).
        env["MLSERVER_MODEL_NAME"] = container["name"]
        if self.checkpoints.get(unit["name"]):
            env["MLSERVER_MODEL_URI"] = str(self.checkpoints[unit["name"]])
        return self.pool.mlserver(unit["name"], env)

    def call(self, unit: dict[str, Any], path: str, body: Any) -> dict[str, Any]:
        if self.protocol == "v2":
            path = f"/v2/models/{self.model_name or unit['name']}/infer"
            try:  # Chain before every unit call (predictor_process.go:112-113, 164-165)
                body = chained(body)
            except ChainError as exc:  # a plain error: 500 (server.go:97-99)
                raise UnitError(500, json.dumps({"status": {"info": str(exc)}}).encode()) from exc
        self.calls.append(f"{unit['name']}{path}")
        service = self.service(unit)
        try:
            response = requests.post(service.url + path, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:  # client.Do's error: a 500 (server.go:97-99)
            raise UnitError(500, json.dumps({"status": {"info": str(exc)}}).encode()) from exc
        if response.status_code != 200:  # httpStatusError with the unit's body (client.go:240-243)
            raise UnitError(response.status_code, response.content, service.url + path)
        return response.json()

    def serve(self, path: str, body: dict[str, Any]) -> Answer:
        """One client request at `path`, answered as the executor answers it. An error is the
        unit's status with the unit's body (a ROUTER's body is dropped: `dropped_route_error`),
        whatever the unit's Content-Type: `respondWithError`
        sets Content-Type after `WriteHeader` (server.go:93-112), which net/http ignores, and
        net/http sniffs the body: `text/plain; charset=utf-8` for JSON text."""
        if self.protocol == "v2":
            match = V2_CLIENT_PATH.match(path)
            if match is None:
                return Answer(404, "text/plain; charset=utf-8", b"404 page not found\n")
            self.model_name = match["name"] or ""
        elif path not in ("/api/v1.0/predictions", "/api/v0.1/predictions"):
            return Answer(404, "text/plain; charset=utf-8", b"404 page not found\n")
        try:
            answer = self.predict(self.graph, body)
        except UnitError as error:
            return Answer(error.status, "text/plain; charset=utf-8", error.body)
        finally:
            self.model_name = ""
        return Answer(200, "application/json", json.dumps(answer).encode())

    def predict(self, unit: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        kind = unit["type"]
        if kind in ("MODEL", "TRANSFORMER"):
            msg = self.call(unit, PATHS[kind], msg)
        children = unit.get("children", [])
        if children:
            route = -1
            if kind == "ROUTER":
                try:
                    route = route_of(self.call(unit, PATHS["ROUTER"], msg))
                except UnitError as error:
                    if not error.url:  # client.Do failed: its plain error, already a 500
                        raise
                    raise dropped_route_error(error) from None
            if route == -2:  # routeToNoChildren: the message goes back as it is
                return msg
            chosen = children if route == -1 else [children[route]]
            outputs = [self.predict(child, msg) for child in chosen]
            if kind == "COMBINER":
                msg = self.call(unit, PATHS["COMBINER"], {"seldonMessages": outputs})
            else:
                msg = outputs[0]
        if kind == "OUTPUT_TRANSFORMER":
            msg = self.call(unit, PATHS[kind], msg)
        return msg


def test_a_failing_router_answers_the_executors_error_not_its_own(pool: Pool) -> None:
    """`JSONRestClient.Route` drops a failing ROUTER's body (executor/api/rest/client.go
    `Route`: `return 0, err`), so the client gets the executor's error payload for the
    httpStatusError, with the unit's status (server.go `respondWithError`), not the unit's
    message naming the tensor."""
    condition = {"tensor": "small.confidence", "op": "lt", "value": 0.8, "reduce": "any"}
    params = [
        {"name": "node", "type": "STRING", "value": "gate"},
        {"name": "condition", "type": "STRING", "value": json.dumps(condition)},
    ]
    leaf = {"type": "MODEL", "children": []}
    graph = {
        "name": "gate",
        "type": "ROUTER",
        "parameters": params,
        "children": [{"name": "then", **leaf}, {"name": "other", **leaf}],
    }
    sdep = {"spec": {"predictors": [{"graph": graph, "componentSpecs": []}]}}
    executor = Executor(pool, sdep)
    body = {"jsonData": {"small.confidence": ["high"]}}  # the unit answers 400 "numeric"
    answer = executor.serve("/api/v1.0/predictions", body)
    url = executor.service(graph).url + PATHS["ROUTER"]
    assert answer.status == 400, answer
    info = f"Internal service call from executor failed calling {url} status code 400"
    assert json.loads(answer.body) == {"status": {"code": 500, "info": info}}


def test_readme_curl_lines_work_as_written(pool: Pool, tiny_classifier: Path) -> None:
    """seldon/README.md's request examples, run by bash and curl exactly as printed there."""
    svc = pool.get("clf", "MODEL", classifier_params("clf", tiny_classifier))
    readme = (REPO / "seldon" / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("curl ")]
    assert len(lines) == 4
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line + " -w '\\n%{http_code}'"],
            env={**os.environ, "URL": svc.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        body, _, code = done.stdout.rpartition("\n")
        assert code == "200", (line, done.stdout)
        assert set(json.loads(body)["jsonData"]["label"]["data"]) <= {"NEGATIVE", "POSITIVE"}


def test_carry_keeps_a_unit_from_echoing_the_request(pool: Pool, tiny_classifier: Path) -> None:
    """A 150 kB text does not come back to the client from the unit that answers it."""
    params = {
        **classifier_params("last", tiny_classifier),
        "carry": "[]",
        "options": {"truncate": True},
    }
    svc = pool.get("last", "MODEL", params)
    text = "fine " * 30_000
    response = svc.post(PATHS["MODEL"], {"jsonData": {"text": [text]}})
    assert response.status_code == 200, response.text
    body = response.json()["jsonData"]
    assert "request.text" not in body and {"last.label", "label"} <= set(body)
    assert len(response.content) < 10_000
