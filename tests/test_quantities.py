"""Kubernetes quantities: one parser for the graph's schema, the renderers and the costs."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from infergraph.quantities import PATTERN, parse_quantity, positive_quantity, scaled_memory


@pytest.mark.parametrize(
    ("quantity", "factor", "written"),
    [
        ("2Gi", Fraction(3, 2), "3Gi"),  # binary stays exact and short
        ("2Gi", Fraction(1), "2Gi"),
        ("512Mi", Fraction(2), "1Gi"),
        ("1500Mi", Fraction(4, 3), "2000Mi"),
        ("3G", Fraction(3, 2), "4292Mi"),  # 4.5e9 bytes is 4291.53 MiB: rounded up
        ("0.5Gi", Fraction(2), "1Gi"),
    ],
)
def test_scaled_memory_is_never_less_than_asked(
    quantity: str, factor: Fraction, written: str
) -> None:
    assert scaled_memory(quantity, factor) == written
    exact = parse_quantity(quantity) * factor
    assert exact <= parse_quantity(written) < exact + 2**20


@pytest.mark.parametrize("good", ["500m", "2", "4Gi", "1.5", "1e3", ".5Gi", "+2M"])
def test_the_schema_pattern_and_the_parser_agree_on_good_quantities(good: str) -> None:
    assert re.match(PATTERN, good)
    assert parse_quantity(good) > 0


@pytest.mark.parametrize("bad", ["2GB", "lots", "1.5.2", "Gi", "2 Gi", "4gi", ""])
def test_the_schema_pattern_and_the_parser_agree_on_bad_quantities(bad: str) -> None:
    assert not re.match(PATTERN, bad)
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(bad)


def test_a_resource_must_be_above_zero() -> None:
    assert positive_quantity("250m") == "250m"
    for value in ("0", "-1", "0Gi"):
        with pytest.raises(ValueError, match="above zero"):
            positive_quantity(value)
