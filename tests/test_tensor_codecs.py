"""The one tensor layer (`infergraph.tensors`): every wire form, one datatype table.

The tensors the local router computes itself (gates, built-in combiners) keep their type: the
router's own codec (`runner/tensors.from_array`, now gone) wrote every non-float array as
INT64, so a BOOL output (the `condition` family's `then` / `otherwise`) came back as 0 / 1
integers, and its `as_array` read the text "NaN" in an FP32 tensor as a float without a word.
"""

from __future__ import annotations

import numpy as np
import pytest

from infergraph.errors import InputError
from infergraph.tensors import from_tensor, to_tensor


def test_a_bool_tensor_the_router_computes_stays_bool() -> None:
    tensor = to_tensor("then", np.array([True, False]))
    assert tensor == {"name": "then", "datatype": "BOOL", "shape": [2], "data": [True, False]}
    assert from_tensor(tensor).dtype == np.bool_


def test_a_router_tensor_holding_nan_text_is_refused_naming_it() -> None:
    tensor = {"name": "value", "datatype": "FP32", "shape": [1], "data": ["NaN"]}
    with pytest.raises(InputError, match=r"input 'value'.*is the text 'NaN', not a number"):
        from_tensor(tensor)
