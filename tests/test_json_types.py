"""Checked reads of JSON documents (`infergraph.json_types`): a wrong shape names its path."""

from __future__ import annotations

import pytest

from infergraph.errors import InfergraphError
from infergraph.json_types import (
    JSONShapeError,
    as_int,
    as_list,
    as_object,
    as_objects,
    as_str,
    as_str_map,
    at,
    object_or_empty,
)

POD = {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}, "metadata": None}


def test_a_path_of_objects_reads_the_same_dict_so_writes_reach_the_document() -> None:
    spec = at(POD, "spec", "template", "spec")
    assert as_objects(spec["containers"], "containers") == [{"name": "a"}]
    spec["x"] = 1
    assert POD["spec"]["template"]["spec"]["x"] == 1  # type: ignore[index]
    del spec["x"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("spec", "missing"), "spec.missing: expected an object, found null"),
        (
            ("spec", "template", "spec", "containers"),
            "spec.template.spec.containers: expected an object, found a list",
        ),
        (("metadata",), "metadata: expected an object, found null"),
    ],
)
def test_a_wrong_step_is_named_with_what_was_found(path: tuple[str, ...], message: str) -> None:
    with pytest.raises(JSONShapeError) as caught:
        at(POD, *path)
    assert str(caught.value) == message
    assert isinstance(caught.value, InfergraphError) and isinstance(caught.value, TypeError)


def test_scalars_and_lists_are_narrowed_or_refused_by_name() -> None:
    assert as_str("x", "w") == "x" and as_int(3, "w") == 3 and as_list([1], "w") == [1]
    assert as_object({"a": 1}, "w") == {"a": 1}
    with pytest.raises(JSONShapeError, match=r"^replicas: expected an integer, found a boolean$"):
        as_int(True, "replicas")
    with pytest.raises(JSONShapeError, match=r"^name: expected a string, found int$"):
        as_str(3, "name")
    with pytest.raises(JSONShapeError, match=r"^env\[1\]: expected an object, found a string$"):
        as_objects([{}, "x"], "env")
    with pytest.raises(JSONShapeError, match=r"^labels.app: expected a string, found null$"):
        as_str_map({"app": None}, "labels")


def test_an_absent_or_null_member_reads_as_an_empty_object_that_is_not_stored() -> None:
    document: dict[str, object] = {"status": None}
    assert object_or_empty(document, "status") == {} and object_or_empty(document, "spec") == {}
    assert document == {"status": None}
    with pytest.raises(JSONShapeError, match=r"^status: expected an object, found a list$"):
        object_or_empty({"status": []}, "status")


def test_an_absent_or_null_step_of_a_path_reads_as_empty_and_a_wrong_one_is_named() -> None:
    isvc = {"status": {"modelStatus": None}}
    assert object_or_empty(isvc, "status", "modelStatus", "copies") == {}
    assert object_or_empty({}, "status", "modelStatus") == {}
    with pytest.raises(
        JSONShapeError, match=r"^status\.modelStatus: expected an object, found int$"
    ):
        object_or_empty({"status": {"modelStatus": 3}}, "status", "modelStatus", "copies")
