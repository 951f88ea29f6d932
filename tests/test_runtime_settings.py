"""The model-settings contract: what the writer renders is what the MLServer runtime reads.

A node's `options` are the component's knobs; `family`, `device`, `dtype` and batching are the
runtime's. Before the contract was typed, both shared one flat `parameters.extra`, options
applied last, so an option named `family` or `device` silently replaced the node's own.
"""

from __future__ import annotations

import asyncio

from mlserver.settings import ModelSettings

from infergraph.graph.model import Node
from infergraph.graph.model_settings import model_settings
from infergraph.serving.mlserver_runtime import ComponentRuntime


async def _load_and_close(runtime: ComponentRuntime) -> None:
    """MLServer's load, then the unload and the cancellation of the hooks it starts."""
    try:
        await runtime.load()
    finally:
        await runtime.unload()
        for name in ("_promotion", "_triton_rpcs", "_settled"):
            task = getattr(runtime, name, None)
            if task is not None:
                task.cancel()


def test_options_named_like_runtime_keys_do_not_override_them() -> None:
    """Rendered settings read by the real runtime: the node's family and device win."""
    node = Node(
        name="plain",
        family="identity",
        device="cpu",
        options={"family": "gate", "device": "cuda:7", "dtype": "bf16"},
    )
    raw = model_settings("plain", "identity", node, None)
    runtime = ComponentRuntime(ModelSettings.model_validate(raw))
    asyncio.run(_load_and_close(runtime))
    component = runtime.component
    assert component.family == "identity"
    assert component.settings.device == "cpu"
    assert component.settings.dtype == "fp32"
    # The component still sees its options, under their own names.
    assert component.settings.options == {"family": "gate", "device": "cuda:7", "dtype": "bf16"}
