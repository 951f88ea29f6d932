"""The model-settings contract: what the writer renders is what the MLServer runtime reads.

A node's `options` are the component's knobs; `family`, `device`, `dtype` and batching are the
runtime's. Before the contract was typed, both shared one flat `parameters.extra`, options
applied last, so an option named `family` or `device` silently replaced the node's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from mlserver.settings import ModelSettings

from infergraph.errors import SettingsError
from infergraph.graph.model import Node
from infergraph.graph.model_settings import model_settings, runtime_settings
from infergraph.graph.runtime_settings import RuntimeSettings
from infergraph.serving.mlserver_runtime import ComponentRuntime
from infergraph.serving.seldon_component import InfergraphComponent

SHIPPED = sorted(
    (Path(__file__).resolve().parent.parent / "mlserver").glob("*/model-settings.json")
)


async def _load_and_close(runtime: ComponentRuntime) -> None:
    """MLServer's load, then the unload."""
    try:
        await runtime.load()
    finally:
        await runtime.unload()


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


def test_writer_and_reader_agree_on_every_field() -> None:
    """to_extra then from_extra is the identity, options nested under their own key."""
    node = Node(name="n", family="identity", device="cuda:1", dtype="fp16", options={"k": [1]})
    extra = model_settings("n", "identity", node, None, relay=True)["parameters"]["extra"]
    assert extra["options"] == {"k": [1]}
    parsed = RuntimeSettings.from_extra(extra)
    assert parsed == runtime_settings("identity", node, relay=True)
    assert parsed.to_extra() == extra


def test_a_helpers_knobs_are_options_too() -> None:
    extra = model_settings("g", "gate", None, None, component_options={"condition": {"op": "lt"}})
    assert extra["parameters"]["extra"] == {
        "family": "gate",
        "options": {"condition": {"op": "lt"}},
    }


def test_max_batch_size_zero_is_mlservers_no_batching() -> None:
    """MLServer's own default `max_batch_size` is 0, meaning no batching: one row a pass."""
    assert (
        RuntimeSettings.from_extra({"family": "identity", "max_batch_size": 0}).max_batch_size == 1
    )


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ({"family": "identity", "options": {}, "devcie": "cpu"}, "parameters.extra.devcie",
         "not a runtime key"),
        ({"family": "identity", "dtype": "fp64"}, "parameters.extra.dtype", "fp64"),
        ({"family": "identity", "max_batch_size": -1}, "parameters.extra.max_batch_size",
         "0 (no batching) or more"),
        ({"family": "identity", "options": [1]}, "parameters.extra.options", "JSON object"),
        ({"family": "identity", "input_aliases": {"a": 1}}, "parameters.extra.input_aliases",
         "client name"),
        ({"dtype": "fp32"}, "parameters.extra.family", "required"),
        ([1, 2], "parameters.extra", "JSON object"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_naming_the_key(extra: object, field: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        RuntimeSettings.from_extra(extra)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_the_flat_form_of_earlier_files_still_loads_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user's file written before the nesting: unknown top-level keys are its options."""
    with caplog.at_level(logging.WARNING, "infergraph.graph.runtime_settings"):
        parsed = RuntimeSettings.from_extra({"family": "identity", "device": "cpu", "top_k": 5})
    assert parsed.device == "cpu" and parsed.options == {"top_k": 5}
    assert "['top_k']" in caplog.text and "deprecated" in caplog.text


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_shipped_settings_are_in_the_nested_form(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "infergraph.graph.runtime_settings"):
        RuntimeSettings.from_extra(json.loads(path.read_text())["parameters"]["extra"])
    assert not caplog.records


def test_the_seldon_v1_unit_reads_the_same_type() -> None:
    """Graph parameters of a v1 unit: options cannot replace the unit's device, and a bad
    parameter is refused naming it, as the MLServer runtime refuses it."""
    unit = InfergraphComponent(
        family="identity", device="cpu", options='{"device": "cuda:7", "family": "gate"}'
    )
    assert unit.settings.device == "cpu"
    assert unit.settings.options == {"device": "cuda:7", "family": "gate"}
    with pytest.raises(SettingsError) as caught:
        InfergraphComponent(family="identity", dtype="fp64")
    assert caught.value.field == "parameters.dtype"
    with pytest.raises(SettingsError) as caught:
        InfergraphComponent(family="identity", options="[1]")
    assert caught.value.field == "parameters.options"
