"""The tensors the local router computes itself (gates, built-in combiners) keep their type.

`runner/tensors.from_array` wrote every non-float array as INT64, so a BOOL output (the
`condition` family's `then` / `otherwise`) came back as 0 / 1 integers, and `as_array` read
the text "NaN" in an FP32 tensor as a float without a word.
"""

from __future__ import annotations

import numpy as np
import pytest

from infergraph.errors import InputError
from infergraph.runner.tensors import as_array, from_array


def test_a_bool_tensor_the_router_computes_stays_bool() -> None:
    tensor = from_array("then", np.array([True, False]))
    assert tensor == {"name": "then", "datatype": "BOOL", "shape": [2], "data": [True, False]}
    assert as_array(tensor).dtype == np.bool_


def test_a_router_tensor_holding_nan_text_is_refused_naming_it() -> None:
    tensor = {"name": "value", "datatype": "FP32", "shape": [1], "data": ["NaN"]}
    with pytest.raises(InputError, match=r"input 'value'.*is the text 'NaN', not a number"):
        as_array(tensor)
