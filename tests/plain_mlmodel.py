"""A plain MLServer model (no infergraph code): what MLServer's own REST /infer answers, for
comparing the runtime's routes with it (tests/test_rest_fast_path.py)."""

from __future__ import annotations

from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from mlserver import MLModel


class PlainEcho(MLModel):  # type: ignore[misc]  # MLServer ships no py.typed marker
    """Answers its first input unchanged, through MLServer's DataPlane and REST handlers."""

    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        first = payload.inputs[0]
        output = ResponseOutput(
            name=first.name, datatype=first.datatype, shape=first.shape, data=first.data
        )
        return InferenceResponse(model_name=self.name, outputs=[output])
