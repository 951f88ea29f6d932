"""Kubernetes resource quantities ("500m", "2", "4Gi", "1e3"): parsed, checked and written.

One parser for the graph's schema (a node's `resources.cpu` and `.memory` must be quantities
the API server accepts), the renderers (a container sized for several copies of a model)
and the cost arithmetic, so the three never read "2G" differently. The grammar is the
API server's (k8s.io/apimachinery/pkg/api/resource/quantity.go, `ParseQuantity`): a signed
decimal number, then a binary suffix (Ki..Ei), a decimal one (n, u, m, k, M, G, T, P, E) or
a decimal exponent.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final

BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL: Final = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
# One grammar for the parser and the generated CRD's `pattern` (RE2 and ECMA-262 read it
# alike), so `kubectl apply` refuses what `parse_quantity` would.
PATTERN: Final = r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
_QUANTITY: Final = re.compile(PATTERN)
EXAMPLES: Final = "e.g. 500m, 2, 4Gi"


def parse_quantity(value: str | float | int) -> float:
    """A quantity as a plain number ("500m" -> 0.5, "4Gi" -> 4294967296.0); a ValueError
    that quotes it otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not a quantity")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"'{value}' is not a Kubernetes quantity ({EXAMPLES})")
    number, exponent, suffix = match.groups()
    if exponent:
        return float(number + exponent)
    suffix = suffix or ""
    return float(number) * (BINARY.get(suffix) or DECIMAL[suffix])


def quantity_text(value: object) -> str:
    """A quantity as the text a manifest carries: a whole number (YAML's unquoted `cpu: 2`,
    or `2.0`) becomes "2", as Kubernetes reads an int-or-string quantity; a bare fraction
    is refused, because an int-or-string field (the CRD's, as controller-gen writes
    resource.Quantity) refuses one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"'{value}' is not a quantity ({EXAMPLES})")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # YAML's 2.0: kubectl sends the JSON number 2, an integer
    if isinstance(value, float):
        raise ValueError(
            f"{value} is a bare fraction, which a quantity field refuses: write it as text "
            f"('{value}' or '{round(value * 1000)}m')"
        )
    return str(value)


def positive_quantity(value: str) -> str:
    """`value` unchanged if it is a quantity above zero (a resource a pod can be given)."""
    if parse_quantity(value) <= 0:
        raise ValueError(f"'{value}' must be above zero")
    return value


def scaled_memory(quantity: str, factor: Fraction) -> str:
    """`quantity` times `factor`, rounded up to whole MiB and written in Gi when whole.

    Exact for the usual binary quantities ("2Gi" * 3/2 is "3Gi"), so a factor of one gives a
    binary quantity back unchanged; a decimal one ("3G") comes back in MiB, never smaller.
    """
    mib = math.ceil(Fraction(parse_quantity(quantity)) * factor / BINARY["Mi"])
    if mib % 1024 == 0:
        return f"{mib // 1024}Gi"
    return f"{mib}Mi"
