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
Requests go over V2 REST to a real `mlserver start`; the Kafka transport is not modelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

Message = dict[str, Any]  # {"tensors": [V2 tensor, ...], "parameters": {...}}
Infer = Callable[[str, dict[str, Any]], dict[str, Any]]


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
        if wanted and tensor["name"] not in wanted:
            continue
        name = renames.get(f"{topic}.{tensor['name']}", tensor["name"])
        tensors.append({**tensor, "name": name})
    if not tensors:
        return None  # "handle cases where there are no tensors we want"
    return {"tensors": tensors, "parameters": dict(message["parameters"]), "at": message["at"]}


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
    """Runs one Pipeline spec; `infer(model, v2_request) -> v2_response` calls a real server."""

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
        request = gateway_request(request)
        topics: dict[str, Message] = {
            f"{self.name}.inputs": {
                "tensors": request["inputs"],
                "parameters": dict(request.get("parameters") or {}),
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
            body: dict[str, Any] = {"inputs": message["tensors"]}
            if message["parameters"]:
                body["parameters"] = message["parameters"]
            response = self.infer(step["name"], body)
            ran.append(step["name"])
            topics[f"{step['name']}.outputs"] = {
                "tensors": response.get("outputs", []),
                "parameters": dict(response.get("parameters") or {}),
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
        return {"outputs": result["tensors"], "parameters": result["parameters"]}, ran
