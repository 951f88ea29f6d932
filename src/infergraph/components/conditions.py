"""Conditions of a graph's `when` steps, evaluated one way by every engine that routes.

The embedded runner, the Seldon v1 ROUTER unit and the Seldon v2 gate model all
call `evaluate`, so a cascade takes the same branch wherever it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat, SupportsIndex

import numpy as np

from infergraph.errors import InputError, SettingsError

NUMERIC_OPS = ("lt", "le", "gt", "ge")


def _as_text(array: np.ndarray) -> np.ndarray:
    flat = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in array.ravel()]
    return np.array(flat, dtype=object)


def _number(value: object) -> float:
    """`float(value)` for what float() takes; TypeError for anything else (None, a list)."""
    if isinstance(value, SupportsFloat | SupportsIndex | str | bytes):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def evaluate(condition: Mapping[str, Any], array: np.ndarray, name: str = "value") -> bool:
    """`tensor op value` over every element, reduced with any/all: the cascade decision.

    An empty tensor does not satisfy any condition (a frame with no detection takes the
    otherwise branch), whatever the reduce: every engine routes it the same way.
    """
    op = str(condition.get("op", ""))
    value = condition.get("value")
    reduce = str(condition.get("reduce", "any"))
    if array.size == 0:
        return False
    if op in NUMERIC_OPS:
        if array.dtype == object or array.dtype.kind in "US":
            raise InputError(name, f"op '{op}' needs a numeric tensor, got {array.dtype}")
        data = array.astype(np.float64).ravel()
        threshold = _number(value)
        result = {
            "lt": data < threshold,
            "le": data <= threshold,
            "gt": data > threshold,
            "ge": data >= threshold,
        }[op]
    elif op in ("eq", "ne", "in", "not_in"):
        values = value if isinstance(value, list) else [value]
        if array.dtype == object or array.dtype.kind in "US":
            data = _as_text(array)
            wanted = np.array([str(v) for v in values], dtype=object)
        else:
            data = array.astype(np.float64).ravel()
            try:
                wanted = np.array([_number(v) for v in values])
            except (TypeError, ValueError) as exc:
                raise InputError(name, f"cannot compare numbers with {values!r}") from exc
        hit = np.isin(data, wanted)
        result = hit if op in ("eq", "in") else ~hit
    else:
        raise SettingsError("condition.op", f"unknown op '{op}'")
    return bool(result.all() if reduce == "all" else result.any())
