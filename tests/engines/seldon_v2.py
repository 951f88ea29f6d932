"""Seldon Core v2 as an executable model: the agent's model-settings rewrite and the dataflow.

Written from seldon-core v2.10.2 (the version the renderer pins), kept small on purpose:

- Agent: `scheduler/pkg/agent/repository/mlserver/mlserver.go` re-writes each Model's
  model-settings.json through a struct holding only name, inputs, outputs, platform, versions,
  parallel_workers, implementation and parameters (uri, version, format, content_type, extra,
  environment_tarball), and loads it as `<model>_<version>` (`agent_rewrite`, `loaded_name`):
  requests reach the model under that name.
- Dataflow (`scheduler/data-flow/src/main/kotlin/io/seldon/dataflow/kafka/`):
  - `PipelineStep.kt` `parseSources`: a step's inputs are grouped by topic (`<step>.outputs`,
    `<pipeline>.inputs`) with the tensors wanted from each (none named: all of them).
  - `StreamTransforms.kt` `convertToRequest` / `filterResponses`: only wanted tensors are
    kept, renamed with the `tensorMap` key `<step>.outputs.<tensor>`; the message's
    parameters are copied (a model's response parameters become the next request's). A
    message left with no tensor is dropped (`filter { size != 0 }`): that is how a missing
    tensor skips a step. A zero-row tensor is a tensor: it is forwarded.
  - `Joiner.kt`: `inner` (the default) waits for every topic, `outer` joins whatever arrives
    in the window, `any` takes the first; inputs are concatenated in topic order and the
    left message's parameters kept.
  - `TriggerTransforms.kt`: with `triggers` the step runs only when each trigger topic holds
    its tensor (inner join); the trigger's own tensors are discarded (`left ?: right`).
  - Join windows: inner and outer joins and the trigger join keep a message only while its
    partners arrive within the window, `kafka.join.window.millis` = 60000
    (data-flow/src/main/resources/local.properties:11; Joiner.kt:124-152,
    TriggerTransforms.kt:31-40) unless the step or output sets `joinWindowMs`
    (PipelineStep.kt:50-57); `any` joins use a fixed 1 ms window (Joiner.kt:105-121) and
    take whatever arrives. Time is modelled: the pipeline's inputs arrive at 0 s, a step's
    outputs at its joined message's time plus the step's latency (`Dataflow(delays=...)`,
    e.g. a cold start).
  - The Pipeline `output` is one more such step whose sink is the pipeline's output topic
    (`steps`, `stepsJoin`, `tensorMap`).
- Pipeline gateway (`scheduler/pkg/kafka/pipeline/v2.go`): a REST request becomes a V2
  proto before it reaches Kafka (`gateway_request`). Go decodes JSON numbers as float64 and
  `requestInputParametersToV2` (v2.go:457-474) turns every one into an int64 parameter, so
  `0.7` arrives as `0`; lists and objects fail the request ("Unknown type for parameter").
  The same conversion applies to request, input and requested-output parameters
  (`parametersToV2`, v2.go:476-485, called at 489, 503 and 514).
- Messages are V2 protos end to end. The gateway turns the REST body into a
  `ModelInferRequest` (`gateway_proto`: v2.go:386-433 `convertTensors`/`copyToTensor`, 435-456
  `tensorToV2`, 513-545 `inferenceRequestToV2Proto`): numbers to the datatype's typed contents
  (FP16 and FP32 as float32, integers truncated), BYTES text as bytes in a buffer sized by
  `shape[0]` (a 2-D BYTES tensor overflows it: Go panics, the request gets no answer), and no
  `id`. The dataflow keeps the protos (StreamTransforms.kt:116-168 `convertToRequest`: a
  response's outputs become the next request's inputs, contents and parameters as they are).
- The model gateway calls each Model over gRPC, not REST: a Kafka message without a
  `seldon-infer-type` header that parses as a `ModelInferRequest` goes to `grpcRequest`
  (scheduler/pkg/kafka/gateway/worker.go:216-222), which sets `model_name` to the Model and
  calls `ModelInfer` (worker.go:390-404); the agent's gRPC proxy renames it `<model>_<version>`
  and clears the version (scheduler/pkg/agent/rproxy_grpc.go:235-242). `GrpcModels` is that
  call against a real MLServer's gRPC port. A V2 parameter is bool, int64 or string only
  (no double in the proto).
- The pipeline's answer goes back to REST through `convertV2ResponseToJson` (v2.go:206-347,
  `gateway_json`): parameters other than bool/int64/string dropped, BYTES outputs as text only
  when the output's `content_type` parameter is `str` or `datetime`, otherwise Go's
  `[][]byte`, which encoding/json writes as base64.
The Kafka transport itself (topics, partitions, the error topic) is not modelled.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from mlserver.grpc import dataplane_pb2 as pb

AGENT_KEPT = (
    "name",
    "inputs",
    "outputs",
    "platform",
    "versions",
    "parallel_workers",
    "implementation",
    "parameters",
)

Tensor = pb.ModelInferRequest.InferInputTensor
# {"tensors": [Tensor, ...], "parameters": {key: pb.InferParameter}, "at": seconds}
Message = dict[str, Any]
Infer = Callable[[pb.ModelInferRequest], pb.ModelInferResponse]


AGENT_PARAMETERS = ("uri", "version", "format", "content_type", "extra", "environment_tarball")
VERSION = 1  # a Model's first version; each spec change loads the next


def loaded_name(model: str, version: int = VERSION) -> str:
    """The name the agent loads a Model under inside MLServer: `<model>_<version>`
    (scheduler/pkg/agent/agent_svc_manager.go:686, 711-716): what its requests address."""
    return f"{model}_{version}"


def agent_rewrite(settings: dict[str, Any], version: int = VERSION) -> dict[str, Any]:
    """model-settings.json as the agent writes it into the server's models folder: the
    top-level keys of its struct, `name` as `<model>_<version>`, `parameters.version` set
    and `parameters` through its struct's fields only (repository/mlserver/mlserver.go:74-85,
    144-161)."""
    written = {k: v for k, v in settings.items() if k in AGENT_KEPT}
    written["name"] = loaded_name(settings["name"], version)
    params = {k: v for k, v in (settings.get("parameters") or {}).items() if k in AGENT_PARAMETERS}
    written["parameters"] = {**params, "version": str(version)}
    return written


class GatewayError(ValueError):
    """The pipeline gateway refused the request (v2.go:471-472)."""


def _gateway_parameter(value: Any) -> Any:
    """One parameter as `requestInputParametersToV2` converts it (v2.go:457-474)."""
    if isinstance(value, str):  # case string: StringParam
        return value
    if isinstance(value, bool):  # case bool: BoolParam (Python's bool is an int: test first)
        return value
    if isinstance(value, (int, float)):  # case float64: Int64Param(int64(val)), toward zero
        return int(float(value))
    raise GatewayError(f"Unknown type for parameter {value}")  # %v of the value


def _gateway_parameters(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _gateway_parameter(v) for k, v in (params or {}).items()}


def gateway_request(request: dict[str, Any]) -> dict[str, Any]:
    """A REST pipeline request as the gateway hands it on: every parameter map through
    `parametersToV2` (request 514, each input 489, each requested output 503)."""
    converted = dict(request)
    if "parameters" in request:
        converted["parameters"] = _gateway_parameters(request["parameters"])
    converted["inputs"] = [
        {**t, "parameters": _gateway_parameters(t["parameters"])} if "parameters" in t else t
        for t in request["inputs"]
    ]
    if "outputs" in request:
        converted["outputs"] = [
            {**o, "parameters": _gateway_parameters(o["parameters"])} if "parameters" in o else o
            for o in request["outputs"]
        ]
    return converted


# -- REST <-> proto at the pipeline gateway (v2.go) ---------------------------------------------
CONTENTS = {  # tensorToV2 (v2.go:435-456): the typed field each datatype fills
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP16": "fp32_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_PARAMETER_KINDS = ("bool_param", "int64_param", "string_param")


def _flatten(data: Any) -> list[Any]:
    """`copyToTensor`'s walk (v2.go:348-376): nested lists element by element, in order."""
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def _go_element(datatype: str, value: Any) -> Any:
    """One element as `copyToTensor` stores it: a Go type assertion (a wrong JSON type
    panics) and a Go conversion (integers truncate, FP16/FP32 become float32)."""
    if datatype == "BYTES":
        if not isinstance(value, str):
            raise GatewayError(f"interface conversion: interface {{}} is {value!r}, not string")
        return value.encode("utf-8")  # []byte(v.(string))
    if datatype == "BOOL" and isinstance(value, bool):
        return value
    if datatype == "BOOL" or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GatewayError(f"interface conversion: {value!r} is not the {datatype} JSON type")
    if datatype in ("FP16", "FP32"):
        return float(np.float32(value))
    if datatype == "FP64":
        return float(value)
    return math.trunc(float(value))  # int32(v.(float64)) and the like


def _gateway_contents(tensor: dict[str, Any]) -> pb.InferTensorContents:
    """`convertTensors` (v2.go:386-417): a buffer of prod(shape) elements, BYTES of
    `shape[0]`; more elements than that overflow it (a Go panic: no answer at all), fewer
    leave Go's zero values."""
    datatype = tensor["datatype"]
    if datatype not in CONTENTS:
        raise GatewayError(f"Unknown type {datatype}")
    shape = [int(d) for d in tensor["shape"]]
    size = shape[0] if datatype == "BYTES" else math.prod(shape)
    values = [_go_element(datatype, v) for v in _flatten(tensor["data"])]
    if len(values) > size:
        raise GatewayError(f"index out of range [{size}] with length {size}: the gateway panics")
    zero: Any = b"" if datatype == "BYTES" else False if datatype == "BOOL" else 0
    return pb.InferTensorContents(**{CONTENTS[datatype]: values + [zero] * (size - len(values))})


def proto_parameters(params: dict[str, Any] | None) -> dict[str, pb.InferParameter]:
    """Already-converted parameters (bool, int, str) as V2 `InferParameter`s."""
    out = {}
    for key, value in (params or {}).items():
        kind = (
            "bool_param"
            if isinstance(value, bool)
            else "int64_param"
            if isinstance(value, int)
            else "string_param"
        )
        out[key] = pb.InferParameter(**{kind: value})
    return out


def gateway_proto(request: dict[str, Any]) -> pb.ModelInferRequest:
    """The REST body as the gateway puts it on Kafka (`inferenceRequestToV2Proto`,
    v2.go:513-545): parameters through `gateway_request`, tensors as typed contents; the
    request `id` is not copied."""
    converted = gateway_request(request)
    inputs = [
        Tensor(
            name=t["name"],
            datatype=t["datatype"],
            shape=t["shape"],
            parameters=proto_parameters(t.get("parameters")),
            contents=_gateway_contents(t),
        )
        for t in converted["inputs"]
    ]
    outputs = [
        pb.ModelInferRequest.InferRequestedOutputTensor(
            name=o["name"], parameters=proto_parameters(o.get("parameters"))
        )
        for o in converted.get("outputs", [])
    ]
    return pb.ModelInferRequest(
        parameters=proto_parameters(converted.get("parameters")), inputs=inputs, outputs=outputs
    )


def _json_parameters(params: Any) -> dict[str, Any]:
    """`createParametersFromv2` (v2.go:216-229): bool, string and int64 kept, others dropped."""
    out = {}
    for key, param in params.items():
        kind = param.WhichOneof("parameter_choice")
        if kind in _PARAMETER_KINDS:
            out[key] = getattr(param, kind)
    return out


def _json_data(output: pb.ModelInferResponse.InferOutputTensor) -> list[Any] | None:
    """The `data` `NamedTensor.MarshalJSON` writes (v2.go:82-160): an empty Go slice is nil,
    written `null`; BYTES are text only with `content_type` `str`/`datetime` (239-247),
    otherwise `[][]byte`, which encoding/json writes as base64; float32 as float32."""
    values = list(getattr(output.contents, CONTENTS[output.datatype]))
    if output.datatype == "BYTES":
        content_type = output.parameters.get("content_type")
        if content_type is not None and content_type.string_param in ("str", "datetime"):
            values = [b.decode("utf-8", errors="replace") for b in values]
        else:
            values = [base64.b64encode(b).decode("ascii") for b in values]
    elif output.datatype in ("FP16", "FP32"):
        values = [float(str(np.float32(v))) for v in values]
    return values or None


def gateway_json(response: pb.ModelInferResponse) -> dict[str, Any]:
    """The pipeline's answer as the gateway writes it for a REST client
    (`convertV2ResponseToJson`, v2.go:206-214, 249-268, 333-346; `omitempty` drops an empty
    parameters map)."""
    if response.raw_output_contents:
        raise NotImplementedError("raw output contents (v2.go:270-319) are not modelled")
    outputs = []
    for output in response.outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "shape": list(output.shape),
            "datatype": output.datatype,
            "data": _json_data(output),
        }
        if params := _json_parameters(output.parameters):
            tensor["parameters"] = params
        outputs.append(tensor)
    answer: dict[str, Any] = {"model_name": response.model_name, "outputs": outputs}
    if params := _json_parameters(response.parameters):
        answer["parameters"] = params
    return answer


# -- the model gateway's gRPC call (worker.go:390-404) and the agent's proxy ----------------
class GrpcModels:
    """`ModelInfer` on a real MLServer's gRPC port, as the model gateway and the agent make
    it: the Model's name becomes the loaded `<model>_<version>`, the version is cleared
    (rproxy_grpc.go:241-242). A failed call raises: the model model routes it to the error
    topic (worker.go:406-408), which this model does not follow."""

    def __init__(self, channel: Any) -> None:
        from mlserver.grpc import dataplane_pb2_grpc

        self.stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)

    def __call__(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        sent = pb.ModelInferRequest()
        sent.CopyFrom(request)
        sent.model_name = loaded_name(request.model_name)
        sent.model_version = ""
        return self.stub.ModelInfer(sent, timeout=120)


@contextmanager
def grpc_models(port: int) -> Iterator[GrpcModels]:
    import grpc

    options = [("grpc.max_receive_message_length", 1048576000)]  # the rendered MLServer limit
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        yield GrpcModels(channel)


def _parse(ref: str, pipeline: str) -> tuple[str, str | None]:
    """`a.outputs.t` -> ("a.outputs", "t"); `p.inputs` -> ("p.inputs", None).

    A bare step name (`a`) is refused, as the scheduler refuses it
    (scheduler/pkg/store/pipeline/validate.go:177-205).
    """
    parts = ref.split(".")
    if len(parts) == 1:
        raise ValueError(f"step reference '{ref}': name <step>.outputs[.<tensor>] or .inputs")
    if len(parts) == 2:
        return ref, None
    return ".".join(parts[:2]), ".".join(parts[2:])


def _group(refs: list[str], pipeline: str) -> dict[str, set[str]]:
    topics: dict[str, set[str]] = {}
    for ref in refs:
        topic, tensor = _parse(ref, pipeline)
        wanted = topics.setdefault(topic, set())
        if tensor:
            wanted.add(tensor)
    return topics


def _project(
    message: Message | None, topic: str, wanted: set[str], renames: dict[str, str]
) -> Message | None:
    if message is None:
        return None
    tensors = []
    for tensor in message["tensors"]:
        if wanted and tensor.name not in wanted:
            continue
        renamed = Tensor()
        renamed.CopyFrom(tensor)
        renamed.name = renames.get(f"{topic}.{tensor.name}", tensor.name)
        tensors.append(renamed)
    if not tensors:
        return None  # "handle cases where there are no tensors we want"
    return {"tensors": tensors, "parameters": dict(message["parameters"]), "at": message["at"]}


def as_request(response: pb.ModelInferResponse) -> dict[str, Any]:
    """A Model's response as the next step's message (`convertToRequest`,
    StreamTransforms.kt:116-168): each output an input with its name, datatype, shape,
    parameters and contents; the response's parameters kept."""
    if response.raw_output_contents:
        raise NotImplementedError("raw output contents are not modelled")
    tensors = [
        Tensor(
            name=o.name,
            datatype=o.datatype,
            shape=o.shape,
            parameters=o.parameters,
            contents=o.contents,
        )
        for o in response.outputs
    ]
    return {"tensors": tensors, "parameters": dict(response.parameters)}


def as_response(pipeline: str, message: Message) -> pb.ModelInferResponse:
    """The joined output message on the pipeline's output topic (`convertToResponse`,
    StreamTransforms.kt:350-396: inputs become outputs, parameters kept)."""
    outputs = [
        pb.ModelInferResponse.InferOutputTensor(
            name=t.name,
            datatype=t.datatype,
            shape=t.shape,
            parameters=t.parameters,
            contents=t.contents,
        )
        for t in message["tensors"]
    ]
    return pb.ModelInferResponse(
        model_name=pipeline, outputs=outputs, parameters=message["parameters"]
    )


DEFAULT_JOIN_WINDOW_S = 60.0  # kafka.join.window.millis=60000 (local.properties:11)


def _join(parts: list[Message | None], join: str, window_s: float) -> Message | None:
    present = [p for p in parts if p is not None]
    if join == "inner" and len(present) != len(parts):
        return None
    if not present:
        return None
    if join == "any":
        present = present[:1]
    elif max(p["at"] for p in present) - min(p["at"] for p in present) > window_s:
        return None  # the first arrival left the window before its partners came
    out: Message = {
        "tensors": [],
        "parameters": dict(present[0]["parameters"]),
        "at": max(p["at"] for p in present),
    }
    for part in present:
        out["tensors"].extend(part["tensors"])
    return out


def _window_s(spec: dict[str, Any]) -> float:
    """A step's or the output's join window: `joinWindowMs`, else the dataflow's default."""
    window_ms = spec.get("joinWindowMs")
    return window_ms / 1000 if window_ms else DEFAULT_JOIN_WINDOW_S


class Dataflow:
    """Runs one Pipeline spec on a REST request; `infer(ModelInferRequest)` is the model
    gateway's gRPC call (`GrpcModels` for a real server)."""

    def __init__(
        self, pipeline: dict[str, Any], infer: Infer, delays: dict[str, float] | None = None
    ) -> None:
        self.name = pipeline["metadata"]["name"]
        self.spec = pipeline["spec"]
        self.infer = infer
        self.delays = delays or {}  # seconds a step takes to answer (a cold start, say)

    def gather(
        self,
        topics: dict[str, Message],
        refs: list[str],
        join: str,
        renames: dict[str, str],
        window_s: float = DEFAULT_JOIN_WINDOW_S,
    ) -> Message | None:
        grouped = _group(refs, self.name)
        parts = [_project(topics.get(t), t, w, renames) for t, w in grouped.items()]
        return _join(parts, join, window_s)

    def triggered(
        self, topics: dict[str, Message], step: dict[str, Any], message: Message
    ) -> Message | None:
        """The step's message once its triggers joined it within the window (None: dropped)."""
        if not step.get("triggers"):
            return message
        window_s = _window_s(step)
        join = step.get("triggersJoinType", "inner")
        trigger = self.gather(topics, step["triggers"], join, {}, window_s)
        if trigger is None or abs(trigger["at"] - message["at"]) > window_s:
            return None
        return {**message, "at": max(trigger["at"], message["at"])}

    def order(self) -> list[dict[str, Any]]:
        """Steps in an order where every producer comes first (the spec's order is not trusted)."""
        steps = {s["name"]: s for s in self.spec["steps"]}
        done: list[dict[str, Any]] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name not in steps:
                return
            seen.add(name)
            for ref in steps[name].get("inputs", []) + steps[name].get("triggers", []):
                visit(ref.split(".")[0])
            done.append(steps[name])

        for name in steps:
            visit(name)
        return done

    def run(self, request: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
        """The pipeline's response (None: it never produces one) and the Models that ran."""
        sent = gateway_proto(request)
        topics: dict[str, Message] = {
            f"{self.name}.inputs": {
                "tensors": list(sent.inputs),
                "parameters": dict(sent.parameters),
                "at": 0.0,
            }
        }
        ran: list[str] = []
        for step in self.order():
            refs = step.get("inputs") or [f"{self.name}.inputs"]
            message = self.gather(
                topics,
                refs,
                step.get("inputsJoinType", "inner"),
                step.get("tensorMap", {}),
                _window_s(step),
            )
            message = self.triggered(topics, step, message) if message is not None else None
            if message is None:
                continue
            response = self.infer(
                pb.ModelInferRequest(
                    model_name=step["name"],
                    model_version=str(VERSION),  # worker.go:395-396, the pinned version
                    inputs=message["tensors"],
                    parameters=message["parameters"],
                )
            )
            ran.append(step["name"])
            topics[f"{step['name']}.outputs"] = {
                **as_request(response),
                "at": message["at"] + self.delays.get(step["name"], 0.0),
            }
        output = self.spec["output"]
        result = self.gather(
            topics,
            output["steps"],
            output.get("stepsJoin", "inner"),
            output.get("tensorMap", {}),
            _window_s(output),
        )
        if result is None:
            return None, ran
        return gateway_json(as_response(self.name, result)), ran
