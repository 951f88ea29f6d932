"""The runtime's `predict` on MLServer's own request type, as MLServer's data plane calls it.

Our REST routes and the gRPC fast path read bodies straight into `InferRequest`; whatever else
reaches the model through MLServer (its data plane before our routes are in place, a server
that skips the fast path) arrives as MLServer's pydantic `InferenceRequest`. It must mean the
same: inputs, request parameters and the id carried over, bad input a 400 naming the input.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from mlserver.errors import MLServerError
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, InferenceResponse

from infergraph.serving.mlserver_runtime import ComponentRuntime


def _served(body: dict[str, object]) -> InferenceResponse:
    settings = ModelSettings(
        name="echo",
        implementation=ComponentRuntime,
        parameters=ModelParameters(extra={"family": "identity"}),
    )

    async def load_and_predict() -> InferenceResponse:
        runtime = ComponentRuntime(settings)
        await runtime.load()
        return await runtime.predict(InferenceRequest.model_validate(body))

    return asyncio.run(load_and_predict())


def test_typed_request_is_served_with_its_inputs_id_and_parameters() -> None:
    answer = _served(
        {
            "id": "req-7",
            "parameters": {"content_type": "np", "unused": 1},
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}
            ],
            "outputs": [{"name": "input"}],
        }
    )
    assert answer.id == "req-7"
    assert answer.model_name == "echo"
    (output,) = answer.outputs
    assert output.name == "input" and output.datatype == "FP32" and output.shape == [2, 3]
    values = getattr(output.data, "root", output.data)
    np.testing.assert_array_equal(np.asarray(values, dtype=np.float32).ravel(), np.arange(1, 7))


def test_typed_request_with_too_few_values_is_a_400_naming_the_input() -> None:
    with pytest.raises(MLServerError) as caught:
        _served({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3], "data": [1]}]})
    assert caught.value.status_code == 400
    assert "input" in str(caught.value) and "echo" in str(caught.value)
