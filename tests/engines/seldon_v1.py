"""Seldon Core v1's executor, the parts a `protocol: v2` chain depends on, written from its source.

seldon-core v1.18.2: before every unit call (transform-input/predict, predictor_process.go:112-113;
transform-output, 164-165) the executor `Chain`s the message (executor/api/rest/client.go:343-353),
which for `protocol: v2` is `ChainKFserving` (executor/api/rest/kfserving.go:10-35): the body
is decoded into Go's `interface{}` and, when it has `outputs` but no `inputs`, the field is
renamed and the map re-marshalled by encoding/json. So a unit's response reaches the next unit
with every other field (`parameters` included) kept, numbers through float64 (`0.0` becomes
`0`) and map keys sorted; a body that already has `inputs` goes on byte for byte, and one with
neither is an error the executor answers 500 (a plain error, not an httpStatusError:
server.go:97-99). The walk itself is `Executor` in tests/seldon/test_components.py.
"""

from __future__ import annotations

import json

from tests.engines.kserve_router import go_decode, go_marshal


class ChainError(ValueError):
    """ChainKFserving refused the body (the executor answers 500)."""


def chain_kfserving(body: bytes) -> bytes:
    """The next unit's request body from the previous unit's response (kfserving.go:10-35)."""
    try:
        message = go_decode(body)
    except ValueError as exc:
        raise ChainError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):  # `f.(map[string]interface{})` would panic
        raise ChainError("not a JSON object")
    if "inputs" in message:
        return body
    if "outputs" not in message:
        raise ChainError("Failed to convert kfserving response so it could be chained to new input")
    message["inputs"] = message.pop("outputs")
    return go_marshal(message)


def chained(response: dict) -> dict:
    """`chain_kfserving` on a decoded response, decoded again for a JSON client."""
    return json.loads(chain_kfserving(json.dumps(response).encode()))


# -- the executor's own pod annotations --------------------------------------------------------
# The executor reads its per-call timeouts from the annotations of the pod it runs in: the
# downward-API file /etc/podinfo/annotations (executor/k8s/annotation.go:11, 27-36, read once at
# start, executor/cmd/executor/main.go:359). Nothing else sets them: none of its flags
# (main.go:57-95) and none of the environment it reads (logging, certificates, CORS, Kafka,
# tracing, the request logger, the predictor: every os.Getenv / LookupEnv under executor/) is
# a timeout, so `svcOrchSpec.env` and the `seldon.io/engine-*` annotations the operator turns
# into its environment (operator/controllers/utils/controller_utils.go:69-89,
# seldondeployment_engine.go:340-358) cannot carry one.
SEPARATE_ENGINE = "seldon.io/engine-separate-pod"
REST_TIMEOUT = "seldon.io/rest-timeout"


def executor_pod_annotations(sdep: dict) -> dict[str, str]:
    """The annotations on the pod the operator runs the executor in (metrics left on).

    - `seldon.io/engine-separate-pod: "true"` (seldondeployment_types.go:66, 81-83): a
      Deployment of its own, `createEngineDeployment` (operator/controllers/
      seldondeployment_controller.go:473-476), whose pod template carries only the two
      Prometheus annotations (seldondeployment_engine.go:393-400); `spec.annotations` go on
      the Deployment object alone (:387), the predictor's nowhere.
    - otherwise: inside componentSpecs[0]'s Deployment (its containers' endpoints become
      localhost, apis/.../v1/defaults.go:130-131; the executor joins the Deployment of that
      unit, seldondeployment_controller.go:587-614), whose pod template gets the Prometheus
      annotations, `spec.annotations`, then the predictor's (:997-1020;
      seldondeployment_engine.go:97-104).
    """
    spec = sdep["spec"]
    top = spec.get("annotations") or {}
    pod = {"prometheus.io/path": "/prometheus", "prometheus.io/scrape": "true"}
    if str(top.get(SEPARATE_ENGINE, "")).lower() == "true":
        return pod
    predictor = spec["predictors"][0]
    return {**pod, **top, **(predictor.get("annotations") or {})}


def executor_rest_timeout_s(sdep: dict) -> float | None:
    """The http.Client timeout of every REST call the executor makes to a unit: the pod's
    `seldon.io/rest-timeout` in ms when it is positive, else none at all
    (`http.DefaultClient` unless `restTimeout > 0`; executor/api/rest/client.go:98-125)."""
    value = executor_pod_annotations(sdep).get(REST_TIMEOUT)
    return ms / 1000 if value and (ms := int(value)) > 0 else None
