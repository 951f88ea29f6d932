"""Start real servers (mlserver, seldon-core-microservice) on free loopback ports for tests.

A picked port can be taken before the server binds it (infergraph.ports); every starter here
runs through `start_until_bound`, which starts the server again on fresh ports when it lost
one, as the embedded runner does for its node servers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx

from infergraph.components.registry import EXTRA_FAMILIES_ENV
from infergraph.graph.runtime_settings import RuntimeSettings
from infergraph.ports import PORT_RETRIES, free_port, lost_a_port

REPO = Path(__file__).resolve().parent.parent


class PortLost(RuntimeError):
    """The server could not bind one of its ports: another process held it."""


def start_until_bound[Started](start: Callable[[], Started]) -> Started:
    """`start()`, called again while the server it starts loses a port race.

    `start` picks fresh ports on each call and waits for readiness through `wait_ready`, which
    raises `PortLost` (having stopped the server) when its log shows a port it could not bind."""
    for retries_left in range(PORT_RETRIES, -1, -1):
        try:
            return start()
        except PortLost:
            if retries_left == 0:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass
class MLServerProcess:
    http_port: int
    grpc_port: int
    metrics_port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def infer(self, model: str, payload: dict[str, Any], timeout: float = 120) -> httpx.Response:
        return httpx.post(f"{self.url}/v2/models/{model}/infer", json=payload, timeout=timeout)

    def log(self) -> str:
        return (self.workdir / "mlserver.log").read_text(errors="replace")


def write_model(
    root: Path,
    name: str,
    family: str,
    uri: str | None = None,
    max_batch_size: int = 1,
    max_batch_time: float = 0.0,
    **extra: Any,
) -> Path:
    """Write a model folder with a model-settings.json the way users write them.

    `extra` may mix runtime keys and the component's options, as the flat form did: the
    options are nested under `options` (graph.runtime_settings)."""
    keys = {f.name for f in fields(RuntimeSettings)}
    runtime = {k: v for k, v in extra.items() if k in keys}
    options = {k: v for k, v in extra.items() if k not in keys}
    nested = {"options": options} if options else {}
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "name": name,
        "implementation": "infergraph.serving.mlserver_runtime.ComponentRuntime",
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time,
        "parameters": {"extra": {"family": family, **runtime, **nested}},
    }
    if uri:
        settings["parameters"]["uri"] = uri
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return folder


@contextmanager
def mlserver(
    models_dir: Path,
    startup_timeout: float = 180,
    env: dict[str, str] | None = None,
    load_models_at_startup: bool = True,
) -> Iterator[MLServerProcess]:
    """Run `mlserver start` on `models_dir` (which holds one folder per model).

    `load_models_at_startup=False` starts the server as Seldon v2's ServerConfig does
    (`MLSERVER_LOAD_MODELS_AT_STARTUP=false`): models load when asked through the repository
    API, and startup waits for liveness only (readiness needs every model loaded).
    """
    server = start_until_bound(
        lambda: _start_mlserver(models_dir, startup_timeout, env, load_models_at_startup)
    )
    try:
        yield server
    finally:
        stop(server.process)


def _start_mlserver(
    models_dir: Path, startup_timeout: float, env: dict[str, str] | None, load_at_startup: bool
) -> MLServerProcess:
    """One start of `mlserver` on fresh ports, returned once it answers."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
        "debug": False,
        "load_models_at_startup": load_at_startup,
    }
    (models_dir / "settings.json").write_text(json.dumps(settings))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    exe = shutil.which("mlserver", path=str(Path(sys.executable).parent)) or "mlserver"
    with open(models_dir / "mlserver.log", "wb") as log_file:
        proc = subprocess.Popen(
            [exe, "start", str(models_dir)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = MLServerProcess(http_port, grpc_port, metrics_port, models_dir, proc)
    try:
        if load_at_startup:
            _wait_ready(server, startup_timeout)
        else:
            wait_ready(server.url, proc, server.log, startup_timeout, "mlserver", "/v2/health/live")
    except BaseException:
        stop(proc)
        raise
    return server


@contextmanager
def graph_server(
    graph_file: Path, workdir: Path, timeout: float, env: dict[str, str], exe: Path | None = None
) -> Iterator[str]:
    """`infergraph serve GRAPH --offline --offline-scale tiny`, as a user runs it; yields its
    URL once the graph answers ready, and stops it (it stops its MLServer on SIGTERM)."""
    program = exe or Path(sys.executable).parent / "infergraph"
    proc, url = start_until_bound(
        lambda: _start_graph_server(program, graph_file, workdir, timeout, env)
    )
    try:
        yield url
    finally:
        stop(proc, grace_s=60)


def _start_graph_server(
    exe: Path, graph_file: Path, workdir: Path, timeout: float, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """One start of the graph server on a fresh port, returned once it answers ready."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    argv = [str(exe), "serve", str(graph_file), "--offline", "--offline-scale", "tiny"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=workdir,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, lambda: log.read_text(errors="replace"), timeout, "infergraph serve")
    except BaseException:
        stop(proc, grace_s=60)
        raise
    return proc, url


class ModelHost:
    """One MLServer shared by the cases of a test file, each case loading its own models.

    Starting MLServer (Python, torch, transformers) costs far more than loading a tiny model,
    so a file of engine cases starts one server (`load_models_at_startup=False`, as Seldon v2's
    ServerConfig runs it) and each case writes its model folders, loads them through the
    repository API (`POST /v2/repository/models/<name>/load`, what Seldon v2's agent calls),
    and unloads and removes them when it ends, so the next case may reuse a name.
    """

    def __init__(self, server: MLServerProcess) -> None:
        self.server = server

    @contextmanager
    def hosting(
        self, settings: list[dict[str, Any]], artifacts: dict[str, Path] | None = None
    ) -> Iterator[MLServerProcess]:
        """Serve the models whose model-settings.json are `settings` for the block; a model
        named in `artifacts` gets that folder's files beside its settings first (what
        Seldon v2's rclone copies from `storageUri`)."""
        folders = []
        try:
            for model in settings:
                folder = self.server.workdir / "models" / model["name"]
                folder.mkdir(parents=True)
                folders.append(folder)
                if artifacts and model["name"] in artifacts:
                    shutil.copytree(artifacts[model["name"]], folder, dirs_exist_ok=True)
                (folder / "model-settings.json").write_text(json.dumps(model))
                self._repository(model["name"], "load")
            yield self.server
        finally:
            for folder in folders:  # each named after its model
                self._repository(folder.name, "unload", missing_ok=True)
                shutil.rmtree(folder)

    def _repository(self, name: str, action: str, missing_ok: bool = False) -> None:
        url = f"{self.server.url}/v2/repository/models/{name}/{action}"
        resp = httpx.post(url, timeout=300)
        if resp.status_code != 200 and not (missing_ok and resp.status_code == 404):
            tail = self.server.log()[-4000:]
            raise RuntimeError(
                f"{action} of model {name!r}: HTTP {resp.status_code} {resp.text}\n{tail}"
            )


@contextmanager
def model_host(root: Path, startup_timeout: float = 300) -> Iterator[ModelHost]:
    """A `ModelHost` on a fresh MLServer under `root`."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    with mlserver(root, startup_timeout, load_models_at_startup=False) as server:
        yield ModelHost(server)


def _wait_ready(server: MLServerProcess, timeout: float) -> None:
    wait_ready(server.url, server.process, server.log, timeout, "mlserver")


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Callable[[], str],
    timeout: float,
    what: str,
    path: str = "/v2/health/ready",
) -> None:
    """Poll `url + path` until it answers 200 (`wait_until` says how a start fails). The one
    HTTP readiness check of the tests: MLServer, `infergraph serve`, seldon-core-microservice
    and the load tester's test server all start through it."""

    def answers() -> bool:
        try:
            return httpx.get(f"{url}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, proc, log, timeout, what)


def wait_until(
    serving: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    log: Callable[[], str],
    timeout: float,
    what: str,
) -> None:
    """Call `serving` until it says yes; fail with the log's tail if `proc` exits first or
    `timeout` seconds pass.

    `log` must return this start's output only. Output that shows a lost port raises
    `PortLost`, for `start_until_bound` to start again: MLServer exits then, while
    seldon-core-microservice stays up without the port (gunicorn retries, then waits on the gRPC
    process), so the process group is stopped here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = proc.poll() is not None
        output = log()
        if lost_a_port(output):
            stop(proc)
            raise PortLost(f"{what} lost a port to another process:\n{output[-4000:]}")
        if exited:
            raise RuntimeError(f"{what} exited early:\n{output[-4000:]}")
        if serving():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout}s:\n{log()[-4000:]}")


def running(pid: int) -> bool:
    """The process exists and is no zombie (a stopped child its parent has not reaped yet
    counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """SIGTERM the process group, SIGKILL it if it outlives `grace_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def v2_input(
    name: str, datatype: str, data: list[Any], shape: list[int] | None = None, **params: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": name,
        "datatype": datatype,
        "shape": shape if shape is not None else [len(data)],
        "data": data,
    }
    if params:
        item["parameters"] = params
    return item


GRPC_FIELDS = {
    "BYTES": "bytes_contents",
    "FP32": "fp32_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
}


def grpc_model_infer(
    server: MLServerProcess,
    model: str,
    tensors: list[tuple[str, str, list[int], list[Any]]],
    parameters: dict[str, Any] | None = None,
) -> Any:
    """One V2 ModelInfer call on the server's gRPC port; returns the raw response message."""
    import grpc
    from mlserver.grpc import dataplane_pb2, dataplane_pb2_grpc

    inputs = [
        dataplane_pb2.ModelInferRequest.InferInputTensor(
            name=name,
            datatype=datatype,
            shape=shape,
            contents=dataplane_pb2.InferTensorContents(**{GRPC_FIELDS[datatype]: data}),
        )
        for name, datatype, shape, data in tensors
    ]
    params = {}
    for key, value in (parameters or {}).items():
        if isinstance(value, bool):
            params[key] = dataplane_pb2.InferParameter(bool_param=value)
        elif isinstance(value, int):
            params[key] = dataplane_pb2.InferParameter(int64_param=value)
        else:
            params[key] = dataplane_pb2.InferParameter(string_param=str(value))
    request = dataplane_pb2.ModelInferRequest(model_name=model, inputs=inputs, parameters=params)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(request, timeout=120)


# Triton's ModelConfig and ModelStatistics through tritonclient's gRPC client.
TRITON_GRPC_CLIENT = """
import json, sys
import tritonclient.grpc as grpcclient

port, model = sys.argv[1:3]
client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
out = {
    "config": client.get_model_config(model, as_json=True)["config"],
    "stats": client.get_inference_statistics(model, as_json=True)["model_stats"],
    "every": [s["name"] for s in client.get_inference_statistics(as_json=True)["model_stats"]],
}
try:
    client.get_model_config("nope")
except grpcclient.InferenceServerException as exc:
    out["missing"] = [str(exc.status()), exc.message()]
print(json.dumps(out))
"""


def triton_grpc(server: MLServerProcess, model: str) -> dict[str, object]:
    """tritonclient's gRPC stubs and MLServer's register the same protos: its own interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", TRITON_GRPC_CLIENT, str(server.grpc_port), model],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def app_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[int]:
    """An aiohttp application served on a free port of `host` from a thread of the test
    process, with its own event loop; yields the port. For servers a test inspects in place
    (what they saw), where a process of their own would need a control endpoint."""
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, host, 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield runner.addresses[0][1]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def families_env(families: str) -> dict[str, str]:
    """What `mlserver start` needs to load extra component families (`name=module:Class`,
    such as the benchmarks' controlled node) from this repository."""
    path = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {EXTRA_FAMILIES_ENV: families, "PYTHONPATH": os.pathsep.join(path)}


def series(metrics: str, name: str, **labels: str) -> float:
    """The value of one series of the Prometheus text exposition (the first whose labels
    include `labels`), 0 when absent."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def metric(server: MLServerProcess, name: str, **labels: str) -> float:
    """One series' value on the server's metrics port, 0 when absent."""
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30).text
    return series(text, name, **labels)


def settle(done: Callable[[], bool], what: str, limit_s: float = 60) -> None:
    """Wait for `done()`; a hang guard, not a bound on speed."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
