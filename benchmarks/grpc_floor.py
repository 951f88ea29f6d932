"""The floor under a gRPC `ModelInfer`: what grpcio's own servers cost per request here.

A server process with no model behind it answers every `ModelInfer` with one fixed
`ModelInferResponse`; 64 closed-loop callers (one grpc.aio channel, in this process, which
is not counted) send the identity request `bench_runtimes` sends. The server's CPU per
request (its /proc utime + stime over the window, every thread) is the least any server
built on that configuration can cost: MLServer's servicer, its converters and our runtime
only add to it.

    PYTHONPATH=src .venv/bin/python benchmarks/grpc_floor.py --seconds 4
    PYTHONPATH=src .venv/bin/python benchmarks/grpc_floor.py --modes aio aio-uvloop sync-8

Modes: `aio` (grpc.aio, asyncio's loop), `aio-uvloop` (uvloop's, what `mlserver start`
installs), `aio-uvloop-trailers` (seven trailing metadata entries, as MLServer's
CloudEvents headers), `aio-mlserver` (uvloop, MLServer 1.7's migration pool of 5 threads
and its `PromServerInterceptor`), `aio-intercepted` (uvloop, one interceptor passing the
handler through, where the runtime's fast path sits), `aio-raw` (uvloop, no protobuf
parsing either way: bytes in, fixed bytes out), `sync-N` (grpc.server on a
ThreadPoolExecutor of N threads). `--env GRPC_POLL_STRATEGY=poll` (any KEY=VALUE) goes to
the server's environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import uvloop
from mlserver.grpc import dataplane_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_runtimes import through_grpc, uptime
from benchmarks.common import console, print_table
from benchmarks.serving_account import process_cpu

SERVICE = "inference.GRPCInferenceService"
MODES = ("aio", "aio-uvloop", "aio-mlserver", "aio-raw", "sync-8")


def fixed_response() -> pb.ModelInferResponse:
    """What the identity node answers: the input back, FP32 [1, 4]."""
    tensor = pb.ModelInferResponse.InferOutputTensor(
        name="output",
        datatype="FP32",
        shape=[1, 4],
        contents=pb.InferTensorContents(fp32_contents=[0.5] * 4),
    )
    return pb.ModelInferResponse(model_name="m", id="x", outputs=[tensor])


def handler(mode: str) -> grpc.GenericRpcHandler:
    """One generic handler for ModelInfer, async or not, parsing protobuf or not."""
    answer = fixed_response()
    raw = mode == "aio-raw"
    encoded = answer.SerializeToString()

    trailers = tuple((f"ce-{k}", "io.seldon.serving.deployment.mlserver") for k in range(7))

    async def infer_async(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if "trailers" in mode:
            context.set_trailing_metadata(trailers)
        return encoded if raw else answer

    def infer_sync(request: Any, context: grpc.ServicerContext) -> Any:
        return answer

    method = infer_sync if mode.startswith("sync") else infer_async
    rpc = grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=None if raw else pb.ModelInferRequest.FromString,
        response_serializer=None if raw else pb.ModelInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": rpc})


class Passing(grpc.aio.ServerInterceptor):
    """An interceptor that hands gRPC the method's handler as it is (the fast path's place)."""

    async def intercept_service(
        self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails
    ) -> Any:
        return await continuation(details)


async def serve_aio(mode: str, port: int) -> None:
    interceptors: list[grpc.aio.ServerInterceptor] = []
    pool = None
    if mode == "aio-intercepted":
        interceptors.append(Passing())
    if mode == "aio-mlserver":
        from mlserver.grpc.interceptors import PromServerInterceptor

        interceptors.append(PromServerInterceptor(enable_handling_time_histogram=True))
        pool = ThreadPoolExecutor(max_workers=5)
    server = grpc.aio.server(pool, interceptors=interceptors)
    server.add_generic_rpc_handlers((handler(mode),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def serve(mode: str, port: int) -> None:
    """The server side, run in its own process (`--serve MODE --port N`)."""
    if mode.startswith("sync"):
        workers = int(mode.split("-")[1])
        server = grpc.server(ThreadPoolExecutor(max_workers=workers))
        server.add_generic_rpc_handlers((handler(mode),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()
        return
    if mode != "aio":
        import uvloop

        uvloop.install()
    asyncio.run(serve_aio(mode, port))


def measure(mode: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Start the server of `mode`, warm it, and load it for `args.seconds`."""
    from tests.servers import free_port

    port = free_port()
    cmd = [sys.executable, __file__, "--serve", mode, "--port", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, env={**os.environ, **env}, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        target = f"127.0.0.1:{port}"
        # The client on uvloop, as bench_runtimes' identity transports run theirs.
        uvloop.run(through_grpc(target, args.concurrency, 1.5))  # warm-up
        cpu, wall = process_cpu(proc.pid), time.perf_counter()
        run = uvloop.run(through_grpc(target, args.concurrency, args.seconds))
        rps, errors = run.rps, run.errors
        cores = (process_cpu(proc.pid) - cpu) / (time.perf_counter() - wall)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    label = " ".join([mode, *(f"{k}={v}" for k, v in env.items())])
    row = {
        "mode": label,
        "rps": rps,
        "server_cores": cores,
        "server_us": cores / rps * 1e6 if rps else float("nan"),
        "rps_per_core": rps / cores if cores else 0.0,
        "errors": errors,
    }
    console.print(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for every server")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="every mode once per round")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    env = dict(item.split("=", 1) for item in args.env)
    load_before = uptime()
    rows = [measure(mode, env, args) for _ in range(args.rounds) for mode in args.modes]
    columns = ["mode", "rps", "server_cores", "server_us", "rps_per_core", "errors"]
    print_table(f"gRPC floor, {args.concurrency} callers", rows, columns)
    console.print(f"loadavg {load_before} -> {uptime()}")


if __name__ == "__main__":
    main()
