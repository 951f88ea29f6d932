"""MLServer adapter: one `MLModel` class serving any component family.

model-settings.json picks the family and its options:

    {"implementation": "infergraph.serving.mlserver_runtime.ComponentRuntime",
     "max_batch_size": 16, "max_batch_time": 0.005,
     "parameters": {"uri": "google/siglip-so400m-patch14-384",
                    "extra": {"family": "image-embedding", "dtype": "fp16"}}}

`max_batch_size`/`max_batch_time` keep their MLServer meaning, but batching is
done per row by `MicroBatcher` (see its docstring for why MLServer's own merger
is switched off).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mlserver.codecs.json import encode_to_json_bytes
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler  # noqa: F401  (documents the mechanism used below)
from mlserver.handlers.custom import CustomHandler, register_custom_handler
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ResponseOutput,
)
from starlette.requests import Request

from infergraph.components.base import Component, ComponentResult, ComponentSettings
from infergraph.components.registry import component_class
from infergraph.errors import InfergraphError, InputError, SettingsError
from infergraph.serving import graph_step
from infergraph.serving.engine import ComponentEngine
from infergraph.serving.metrics import INFLIGHT, QUEUE, REQUESTS
from infergraph.serving.tensors import from_numpy, to_numpy
from mlserver import MLModel

log = logging.getLogger(__name__)


_SETTINGS_KEYS = {"device", "dtype", "warmup"}


class ComponentRuntime(MLModel):
    """Serves one component over V2 REST and gRPC, with per-row batching."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        # MLServer wraps predict() in its request-merging batcher right after construction,
        # before load(), whenever max_batch_size > 1: take the knobs for our batcher here.
        self._batching = (settings.max_batch_size, settings.max_batch_time)
        settings.max_batch_size = 1
        settings.max_batch_time = 0
        # Instance-specific raw-body route (the Triton embed_image pattern): a custom
        # handler on the class would register one path for every model.
        handler = self._raw_infer
        raw_path = f"/v2/models/{settings.name}/infer/raw"

        async def raw_endpoint(request: Request) -> dict[str, Any]:
            return await handler(request)

        register_custom_handler(CustomHandler(rest_path=raw_path, rest_method="POST"), raw_endpoint)
        self.raw_endpoint = raw_endpoint
        # The KServe InferenceGraph step route (infergraph.serving.graph_step).
        step_handler = self._graph_step
        step_path = f"/v2/models/{settings.name}{graph_step.ROUTE_SUFFIX}"

        async def step_endpoint(request: Request) -> dict[str, Any]:
            return await step_handler(request)

        step_route = CustomHandler(rest_path=step_path, rest_method="POST")
        register_custom_handler(step_route, step_endpoint)
        self.step_endpoint = step_endpoint
        self._wiring: graph_step.StepWiring | None = None

    async def load(self) -> bool:
        extra = dict((self.settings.parameters.extra if self.settings.parameters else None) or {})
        family = extra.pop("family", None)
        if not family:
            raise SettingsError("parameters.extra.family", "required: which component to serve")
        uri = self.settings.parameters.uri if self.settings.parameters else None
        # Seldon v2's agent drops the top-level batching fields (MLServer then gives 0), so
        # `extra` carries them too and wins; absent or 0 means one row, no wait.
        wiring = extra.pop(graph_step.SETTINGS_KEY, None)
        if wiring is not None:
            self._wiring = graph_step.StepWiring.parse(wiring)
        size = extra.pop("max_batch_size", None) or self._batching[0] or 1
        wait_ms = extra.pop("max_batch_time_ms", None)
        wait = wait_ms / 1000.0 if wait_ms is not None else (self._batching[1] or 0.0)
        component_settings = ComponentSettings(
            model_uri=uri or None,
            max_batch_size=int(size),
            max_batch_time=float(wait),
            **{k: extra.pop(k) for k in list(extra) if k in _SETTINGS_KEYS},
            options=extra,
        )
        self.component: Component = component_class(family)(component_settings)
        self.component.start()
        self.engine = ComponentEngine(self.component)
        self._describe()
        return True

    async def unload(self) -> bool:
        if hasattr(self, "engine"):
            await self.engine.close()
        return True

    def _describe(self) -> None:
        """Publish the component's tensors in the model's V2 metadata."""
        if not self.settings.inputs:
            self.settings.inputs = [
                MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
                for s in self.component.inputs
            ]
        if not self.settings.outputs:
            self.settings.outputs = [
                MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
                for s in self.component.outputs
            ]

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inflight = INFLIGHT.labels(self.name)
        inflight.inc()
        QUEUE.labels(self.name).set(self.engine.pending_rows)
        outcome = "ok"
        try:
            return await self._predict(payload)
        except MLServerError:
            outcome = "bad_input"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            inflight.dec()
            QUEUE.labels(self.name).set(self.engine.pending_rows)
            REQUESTS.labels(self.name, outcome).inc()

    async def _predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            inputs = {}
            for inp in payload.inputs:
                content_type = inp.parameters.content_type if inp.parameters else None
                data = getattr(inp.data, "root", inp.data)
                inputs[inp.name] = to_numpy(inp.name, inp.datatype, inp.shape, data, content_type)
            params = payload.parameters.model_dump(exclude_none=True) if payload.parameters else {}
            params.pop("content_type", None)
            params.pop("headers", None)
            result = await self.engine.infer(inputs, params)
        except InputError as exc:
            raise MLServerError(f"{self.name}: {exc}", status_code=400) from exc
        except InfergraphError as exc:
            raise MLServerError(f"{self.name}: {exc}", status_code=422) from exc
        return self._response(payload.id, result)

    def _response(self, request_id: str | None, result: ComponentResult) -> InferenceResponse:
        outputs = []
        for name, array in result.outputs.items():
            datatype, shape, data, out_params = from_numpy(array)
            if datatype == "BYTES":
                # gRPC's bytes_contents needs bytes; the REST encoder decodes them to text.
                data = [d.encode("utf-8") if isinstance(d, str) else d for d in data]
            outputs.append(
                ResponseOutput(
                    name=name,
                    datatype=datatype,
                    shape=shape,
                    data=data,
                    parameters=out_params or None,
                )
            )
        return InferenceResponse(
            id=request_id,
            model_name=self.name,
            model_version=self.version,
            outputs=outputs,
            parameters=_plain_parameters(result.parameters),
        )

    async def _raw_infer(self, request: Request) -> dict[str, Any]:
        """Raw body (e.g. image bytes as application/octet-stream) as the first input."""
        raw_input = next((s for s in self.component.inputs if s.datatype == "BYTES"), None)
        if raw_input is None:
            raise MLServerError(f"{self.name}: takes no raw-bytes input", status_code=400)
        body = await request.body()
        if not body:
            raise MLServerError(f"{self.name}: input '{raw_input.name}': empty body", 400)
        params = {k: v for k, v in request.query_params.items()}
        try:
            array = to_numpy(raw_input.name, "BYTES", [1], [body])
            result = await self.engine.infer({raw_input.name: array}, params)
        except InputError as exc:
            raise MLServerError(f"{self.name}: {exc}", status_code=400) from exc
        return self._response(None, result).model_dump(exclude_none=True)

    async def _graph_step(self, request: Request) -> dict[str, Any]:
        """One InferenceGraph step on a carried body (see infergraph.serving.graph_step)."""
        if self._wiring is None:
            raise MLServerError(f"{self.name}: not rendered as a graph step", status_code=404)
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise MLServerError(f"{self.name}: body is not JSON: {exc}", status_code=400) from exc

        async def call(feed: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
            payload = InferenceRequest(inputs=list(feed.values()), parameters=params or None)
            reply = await self.predict(payload)
            # The REST encoding, as /infer would answer (bytes become text or base64).
            plain = json.loads(encode_to_json_bytes(reply.model_dump()))
            return {t["name"]: t for t in plain.get("outputs", [])}

        try:
            return await graph_step.run_step(self._wiring, body, call)
        except InputError as exc:
            raise MLServerError(f"{self.name}: {exc}", status_code=400) from exc


def _plain_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Response parameters must be scalars: lists and dicts travel as JSON text."""
    plain: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, (list, dict, tuple)):
            plain[key] = json.dumps(value)
        else:
            plain[key] = value
    return plain
