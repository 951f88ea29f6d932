"""Per-request knobs: request `parameters` first, then the deployment's options, then a default.

Parameters arrive as JSON values over REST, as typed values over gRPC, and as text from
query strings; every parser here accepts all three and names the knob when it refuses one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergraph.errors import InputError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def parameter(
    parameters: Mapping[str, object], options: Mapping[str, object], name: str, default: Any
) -> Any:
    """The request's value when it sent one, else the model's option, else `default`."""
    if name in parameters and parameters[name] is not None:
        return parameters[name]
    return options.get(name, default)


def as_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(name, f"expected true or false, got {value!r}")


def as_int(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        raise InputError(name, f"expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise InputError(name, f"{number} is out of range; allowed {low}..{high}")
    return number


def as_float(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"expected a number, got {value!r}") from None
    if not low <= number <= high:
        raise InputError(name, f"{number} is out of range; allowed {low}..{high}")
    return number


def flag(
    parameters: Mapping[str, object], options: Mapping[str, object], name: str, default: bool
) -> bool:
    """A boolean knob: request parameter, then deployment option, then default."""
    return as_bool(parameter(parameters, options, name, default), name)


def bounded_int(
    parameters: Mapping[str, object], name: str, default: int, low: int, high: int
) -> int:
    """An integer request parameter, defaulted and checked against [low, high]."""
    return as_int(parameters.get(name, default), name, low, high)
