"""V2 JSON tensors as a graph passes them between steps, without numpy round trips.

Tensors stay in their wire form (name, datatype, shape, data, parameters) so a hop costs one
JSON decode and encode. The tensor type itself and its codecs are `infergraph.tensors`; what
is here is how a graph moves it between steps, shared by the local router and the KServe
graph step.
"""

from __future__ import annotations

from collections.abc import Mapping

from infergraph.components.base import TensorSpec
from infergraph.errors import InputError
from infergraph.tensors.datatypes import element_count, zero_row_shape
from infergraph.tensors.v2json import Tensor as Tensor
from infergraph.tensors.v2json import check_count


def renamed(tensor: Tensor, name: str) -> Tensor:
    """The same tensor under another name (the names differ at every hop)."""
    out = {k: v for k, v in tensor.items() if k != "name"}
    out["name"] = name
    return out


def rows(tensor: Tensor) -> int:
    """The batch size: the first dimension (a scalar counts as one row). The tensor is read
    as a request brought it (the codecs check shapes later, in the model), so a shape that
    gives no row count is the client's error, named, rather than a bare TypeError."""
    shape = tensor.get("shape") or []
    if not isinstance(shape, list):
        raise InputError(str(tensor.get("name")), f"shape must be a list, got {shape!r}")
    if not shape:
        return 1
    first = shape[0]
    if not isinstance(first, int) or isinstance(first, bool):
        raise InputError(str(tensor.get("name")), f"shape must hold integers, got {shape!r}")
    return first


def empty_like(spec: TensorSpec) -> Tensor:
    """A well-formed zero-row tensor of a declared output (for skipped steps)."""
    shape = zero_row_shape(spec.shape)
    return {"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": []}


def check_shape(name: str, tensor: Mapping[str, object]) -> None:
    """The tensor's shape is a list of integers that its data fills, as the runtime's reader
    (`tensors.v2json.decode_json`) would find; raises `InputError` naming `name`.

    Data nested in lists is left to the decoder (counting it means walking every element);
    a flat list, a numpy array (a binary input) or one scalar is counted here.
    """
    dims, expected = element_count(name, tensor.get("shape"))
    data = tensor.get("data")
    if data is None:
        if expected:  # Seldon v2 writes an empty tensor's data as null
            raise InputError(name, f"shape {dims} needs {expected} elements but it has no data")
        return
    if isinstance(data, list):
        if data and isinstance(data[0], list):
            return
        count = len(data)
    else:
        size = getattr(data, "size", None)  # a binary input's flat numpy array
        count = size if isinstance(size, int) else 1
    check_count(name, dims, expected, count)
