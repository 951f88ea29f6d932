"""Process orchestration for the embedded runner: MLServer process(es) plus the router.

Node servers are supervised: one that exits unasked is logged with its exit status and the
tail of its log, reaped, and started again after a backoff that doubles (1 s up to 30 s)
while it keeps failing; a restart that cannot even start is logged and tried again on the
same backoff. It starts on fresh ports, since the ones a crash freed are anyone's
to bind meanwhile, and the router reads node addresses from the map the restart updates.
Meanwhile the router reports the graph not ready (it asks every node) and requests that need
the node fail at once with a 502 naming it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import GraphPlan, plan_of
from infergraph.ports import PORT_RETRIES, free_port, log_shows_a_lost_port
from infergraph.runner.repository import Scale, write_repository
from infergraph.runner.router import router_runner

log = logging.getLogger(__name__)


class RunnerError(InfergraphError):
    """The local runner could not start or lost a node server."""


# The readiness probe's own limit: a port taken by another process may accept and never answer.
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


@dataclass
class NodeServer:
    """One `mlserver start` process hosting some of the graph's nodes."""

    nodes: list[str]
    folder: Path
    http_port: int
    grpc_port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)
    stopping: bool = False
    restarts: int = 0
    log_start: int = 0  # where this start's lines begin in the log, which runs append to

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        settings = {
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": free_port(),
            # In-process: our runtime batches and runs forward passes on its own thread.
            "parallel_workers": 0,
            "debug": False,
        }
        (self.folder / "settings.json").write_text(json.dumps(settings))
        self.log_path = self.folder / "mlserver.log"
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        exe = shutil.which("mlserver", path=str(Path(sys.executable).parent)) or "mlserver"
        self.stopping = False
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [exe, "start", str(self.folder)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        log_file.close()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def lost_a_port(self) -> bool:
        """This start failed to bind a port: another process took it after `free_port`."""
        return log_shows_a_lost_port(self.log_path, self.log_start)

    def start_on_fresh_ports(self) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.start()

    def stop(self) -> None:
        """Stop on purpose: the supervisor leaves a stopped server down."""
        self.stopping = True
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class RunningGraph:
    graph: InferenceGraph
    url: str
    servers: list[NodeServer]

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.graph.name}/infer"


async def wait_ready(servers: list[NodeServer], timeout: float, poll_s: float = 0.25) -> None:
    """Wait until every node server answers ready, asking every `poll_s`; one that lost a
    port race starts again."""
    deadline = time.monotonic() + timeout
    retries = {id(s): PORT_RETRIES for s in servers}
    async with aiohttp.ClientSession(timeout=_PROBE_TIMEOUT) as session:
        pending = list(servers)
        while pending:
            for server in list(pending):
                if server.process and server.process.poll() is not None:
                    if not (server.lost_a_port() and retries[id(server)] > 0):
                        raise RunnerError(
                            f"mlserver for nodes {', '.join(server.nodes)} exited:\n"
                            f"{server.log_tail()}"
                        )
                    retries[id(server)] -= 1
                    log.warning("a port of nodes %s was taken; new ports", server.nodes)
                    server.start_on_fresh_ports()
                    continue
                if await _answers_ready(session, server):
                    pending.remove(server)
            if pending and time.monotonic() > deadline:
                names = ", ".join(n for s in pending for n in s.nodes)
                raise RunnerError(f"nodes not ready after {timeout:.0f}s: {names}")
            if pending:
                await asyncio.sleep(poll_s)


async def _answers_ready(session: aiohttp.ClientSession, server: NodeServer) -> bool:
    """Every node's model answers ready. Not the server's own ready: MLServer answers that
    for an empty registry (`all` of no models, mlserver/handlers/dataplane.py:61-63), which is
    what it holds between a model's failed load and its exit."""
    try:
        for node in server.nodes:
            async with session.get(f"{server.base}/v2/models/{node}/ready") as resp:
                if resp.status != 200:
                    return False
    except (aiohttp.ClientError, TimeoutError):
        return False
    return True


async def supervise(
    servers: list[NodeServer],
    first_backoff: float = 1.0,
    max_backoff: float = 30.0,
    moved: Callable[[NodeServer], None] | None = None,
) -> None:
    """Restart node servers that exit unasked, with doubling backoff; runs until cancelled.

    Each restart takes fresh ports and is then reported to `moved`, which points the router
    at the server's new address."""
    backoff = {id(s): first_backoff for s in servers}
    due: dict[int, float] = {}
    started: dict[int, float] = {id(s): time.monotonic() for s in servers}
    while True:
        now = time.monotonic()
        for server in servers:
            key = id(server)
            proc = server.process
            if server.stopping or proc is None:
                continue
            if key in due:
                if now >= due[key]:
                    del due[key]
                    if _restart(server, moved):
                        started[key] = now
                    else:  # tried again after the backoff, which doubles on
                        due[key] = now + backoff[key]
                        backoff[key] = min(backoff[key] * 2, max_backoff)
                continue
            code = proc.poll()  # reaps the child when it has exited
            if code is None:
                if now - started[key] > 60:  # up for a minute: the next failure starts afresh
                    backoff[key] = first_backoff
                continue
            log.error(
                "mlserver for nodes %s exited with status %s; restarting in %.0f s\n%s",
                ", ".join(server.nodes),
                code,
                backoff[key],
                server.log_tail(1500),
            )
            due[key] = now + backoff[key]
            backoff[key] = min(backoff[key] * 2, max_backoff)
        await asyncio.sleep(0.2)


def _restart(server: NodeServer, moved: Callable[[NodeServer], None] | None) -> bool:
    """Start a server that exited again; False, logged, when the start itself fails.

    A restart can fail on its own: EMFILE from a port probe under load, ENOSPC or a removed
    workdir when writing settings.json, `Popen` refused. An exception here used to end the
    supervisor, silently, and with it every later restart."""
    server.restarts += 1
    names = ", ".join(server.nodes)
    log.warning("restarting mlserver for nodes %s (restart %d)", names, server.restarts)
    try:
        server.start_on_fresh_ports()
        if moved is not None:
            moved(server)
    except Exception:
        log.exception("restart %d of mlserver for nodes %s failed", server.restarts, names)
        return False
    return True


async def _shut_down(
    supervisor: asyncio.Task[None] | None,
    runner: web.AppRunner | None,
    listener: socket.socket,
    servers: list[NodeServer],
    workdir: Path | None,
) -> None:
    """Stop everything `run_graph` started, each step whatever became of the others: the
    node servers run in sessions of their own, so one left running outlives the runner,
    Ctrl-C included. A failure is logged, not raised over the block's own exception."""
    if supervisor is not None:
        supervisor.cancel()
        try:
            await supervisor
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("the node supervisor had failed")
    if runner is not None:
        try:
            await runner.cleanup()
        except Exception:
            log.exception("stopping the router failed")
    listener.close()
    for server in servers:
        try:
            server.stop()
        except Exception:
            log.exception("stopping mlserver for nodes %s failed", ", ".join(server.nodes))
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def router_socket(port: int) -> socket.socket:
    """The router's listening socket, bound before any node server starts.

    A taken port then fails at once, not after minutes of loading models; and port 0 takes the
    kernel's pick at the bind itself, leaving no moment in which anyone else can take it."""
    listener = socket.socket()
    # What asyncio's create_server sets on Unix: a restart may bind over TIME_WAIT sockets.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise RunnerError(
                f"the router's port {port} is in use on 127.0.0.1 ({exc.strerror}): choose "
                "another with --port, or --port 0 for any free one"
            ) from exc
        raise RunnerError(f"cannot bind the router to 127.0.0.1:{port}: {exc.strerror}") from exc
    return listener


@asynccontextmanager
async def run_graph(
    source: InferenceGraph | GraphPlan,
    *,
    port: int = 0,
    offline: bool = False,
    offline_scale: Scale = "full",
    isolate: bool = False,
    workdir: Path | None = None,
    startup_timeout: float = 600.0,
) -> AsyncIterator[RunningGraph]:
    """Serve the graph until the block exits; everything started is stopped on the way out."""
    plan = plan_of(source)
    graph = plan.graph
    listener = router_socket(port)
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix=f"infergraph-{graph.name}-")) if own_dir else workdir
    assert root is not None
    servers: list[NodeServer] = []
    runner: web.AppRunner | None = None
    supervisor: asyncio.Task[None] | None = None
    try:
        folders = await asyncio.to_thread(
            write_repository, graph, root / "models", offline, offline_scale
        )
        groups = [[n] for n in folders] if isolate else [list(folders)]
        for i, group in enumerate(groups):
            folder = root / f"server-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            for node in group:
                target = folder / node
                if not target.exists():
                    target.symlink_to(folders[node], target_is_directory=True)
            servers.append(NodeServer(group, folder, free_port(), free_port()))
        for server in servers:
            server.start()
        await wait_ready(servers, startup_timeout)
        # The router reads this map on every request: a restarted server updates it.
        bases = {node: s.base for s in servers for node in s.nodes}

        def moved(server: NodeServer) -> None:
            bases.update({node: server.base for node in server.nodes})

        supervisor = asyncio.get_running_loop().create_task(supervise(servers, moved=moved))
        runner = router_runner(plan, bases)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        bound = int(listener.getsockname()[1])
        yield RunningGraph(graph, f"http://127.0.0.1:{bound}", servers)
    finally:
        await _shut_down(supervisor, runner, listener, servers, root if own_dir else None)
