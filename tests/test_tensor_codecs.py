"""The one tensor layer (`infergraph.tensors`): every wire form, one datatype table.

The tensors the local router computes itself (gates, built-in combiners) keep their type: the
router's own codec (`runner/tensors.from_array`, now gone) wrote every non-float array as
INT64, so a BOOL output (the `condition` family's `then` / `otherwise`) came back as 0 / 1
integers, and its `as_array` read the text "NaN" in an FP32 tensor as a float without a word.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest

from infergraph.components.base import TensorSpec, empty_tensor
from infergraph.errors import InputError
from infergraph.graph.wire import empty_like
from infergraph.serving.binary import json_bytes as dumps
from infergraph.tensors import (
    CODECS,
    V2_TO_NUMPY,
    datatype_of,
    decode_binary,
    decode_json,
    decode_seldon,
    encode_binary,
    encode_grpc,
    encode_json,
    encode_json_array,
    encode_seldon,
    from_tensor,
    infer_plain,
    register,
    to_tensor,
)
from infergraph.tensors.v2json import _decode_each


def test_a_bool_tensor_the_router_computes_stays_bool() -> None:
    tensor = to_tensor("then", np.array([True, False]))
    assert tensor == {"name": "then", "datatype": "BOOL", "shape": [2], "data": [True, False]}
    assert from_tensor(tensor).dtype == np.bool_


def test_a_router_tensor_holding_nan_text_is_refused_naming_it() -> None:
    tensor = {"name": "value", "datatype": "FP32", "shape": [1], "data": ["NaN"]}
    with pytest.raises(InputError, match=r"input 'value'.*is the text 'NaN', not a number"):
        from_tensor(tensor)


TEXT = np.array([b"caf\xc3\xa9", b"tea"], dtype=object)
IMAGE = np.array([b"\x89PNG\r\n\x1a\n\xff"], dtype=object)
NUMBERS = [np.array([[0, 1, 2], [3, 4, 5]]).astype(dtype) for dtype in V2_TO_NUMPY.values()]


@pytest.mark.parametrize("array", [*NUMBERS, TEXT, IMAGE], ids=lambda a: str(datatype_of(a)))
def test_every_wire_form_reads_back_what_it_wrote(array: np.ndarray) -> None:
    datatype, raw = encode_binary(array)
    grpc_datatype, shape, grpc_data, params = encode_grpc(array)
    forms = {
        "v2 json": from_tensor(to_tensor("x", array)),
        "v2 json, arrays": read_back(array),
        "binary": decode_binary("x", datatype, list(array.shape), raw),
        "seldon": decode_seldon("x", encode_seldon(array)),
        "grpc": decode_json("x", grpc_datatype, shape, grpc_data, params.get("content_type")),
    }
    for form, back in forms.items():
        assert back.dtype == array.dtype, form
        assert back.tolist() == array.tolist(), form


def read_back(array: np.ndarray) -> np.ndarray:
    """`array` written as the REST runtime writes outputs, read by Python's json (float64)."""
    datatype, shape, data, params = encode_json_array(array)
    tensor = {"name": "x", "datatype": datatype, "shape": shape, "data": data}
    if params:
        tensor["parameters"] = params
    return from_tensor(json.loads(dumps(tensor)))


def test_every_finite_fp16_and_sampled_fp32_reads_back_to_the_same_bits() -> None:
    """Floats go in their own precision's shortest text; a float64 reader casting back gets
    the same bits (every finite FP32 was walked by benchmarks/fp32_json_exhaustive.py)."""
    half = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    half = half[np.isfinite(half)]
    assert read_back(half).view(np.uint16).tolist() == half.view(np.uint16).tolist()
    bits = np.random.default_rng(7).integers(0, 0x7F800000, 200_000, dtype=np.uint32)
    single = np.concatenate([bits, bits | 0x80000000]).astype(np.uint32).view(np.float32)
    assert read_back(single).view(np.uint32).tolist() == single.view(np.uint32).tolist()


def test_the_one_fp32_its_shortest_text_loses_goes_as_float64_text() -> None:
    """7.038531e-26 parsed to float64 and cast lands one ulp above; its tensor goes long."""
    value = np.array([0x15AE43FD, 0x95AE43FD], np.uint32).view(np.float32)
    short = float(np.float32(float("7.038531e-26")))
    assert np.array([short], np.float32).view(np.uint32)[0] == 0x15AE43FE  # the double rounding
    _, _, data, _ = encode_json_array(value)
    assert isinstance(data, list)
    assert read_back(value).view(np.uint32).tolist() == [0x15AE43FD, 0x95AE43FD]
    assert dumps(encode_json_array(np.float32([0.1]))[2]) == b"[0.1]"


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, 2.0], [3.25, 4.0]], dtype=">f4"),  # not native-endian
        np.arange(6, dtype=np.float32).reshape(2, 3).T,  # not C-ordered
        np.array([1, 2], dtype=np.int64)[::-1],
        np.array([np.nan, np.inf, 1.0], dtype=np.float32),
    ],
    ids=["big-endian", "transposed", "reversed", "non-finite"],
)
def test_any_array_is_written_in_row_major_order_as_the_list_form_writes_it(
    array: np.ndarray,
) -> None:
    """Written flat in row-major order exactly as the list form: non-finite values as null,
    as orjson writes them either way."""
    datatype, shape, data, _ = encode_json_array(array)
    list_datatype, list_shape, listed, _ = encode_json(array)
    assert (datatype, shape) == (list_datatype, list_shape)
    assert json.loads(dumps(data)) == json.loads(dumps(listed))


def test_bytes_are_text_when_they_can_be_and_base64_otherwise() -> None:
    assert to_tensor("t", TEXT)["parameters"] == {"content_type": "str"}
    assert to_tensor("t", TEXT)["data"] == ["café", "tea"]
    assert to_tensor("i", IMAGE)["parameters"] == {"content_type": "base64"}


def test_base64_that_is_not_base64_is_refused_naming_the_input() -> None:
    with pytest.raises(InputError, match="input 'image' row 0: content_type base64 but not"):
        decode_json("image", "BYTES", [1], ["not base64!"], "base64")


def test_an_unregistered_content_type_reads_the_elements_as_they_are() -> None:
    assert decode_json("t", "BYTES", [1], ["aGk="], "text/plain").tolist() == [b"aGk="]


class _HexCodec:
    content_type = "hex"

    def decode(self, raw: bytes) -> bytes:
        return bytes.fromhex(raw.decode("ascii"))

    def encode(self, items: Sequence[object]) -> list[str] | None:
        return [bytes(x).hex() for x in items if isinstance(x, bytes)]


def test_a_registered_content_type_is_read_and_written_by_its_codec() -> None:
    try:
        register(_HexCodec())
        assert decode_json("h", "BYTES", [1], ["6869"], "hex").tolist() == [b"hi"]
        with pytest.raises(InputError, match="content_type hex but not valid hex"):
            decode_json("h", "BYTES", [1], ["zz"], "hex")
        assert encode_json(IMAGE, content_type="hex")[2:] == (
            ["89504e470d0a1a0aff"],
            {"content_type": "hex"},
        )
    finally:
        CODECS.pop("hex", None)


@pytest.mark.parametrize("datatype", [*V2_TO_NUMPY, "BYTES"])
def test_one_empty_tensor_for_arrays_and_json(datatype: str) -> None:
    spec = TensorSpec("out", datatype, (-1, 4))
    array = empty_tensor(spec)
    assert array.shape == (0, 4)
    assert datatype_of(array) == datatype
    assert empty_like(spec) == {"name": "out", "datatype": datatype, "shape": [0, 4], "data": []}


def test_a_plain_seldon_bool_list_stays_bool() -> None:
    assert infer_plain("flags", [True, False]).dtype == np.bool_


# JSON data as clients send it, right and wrong: each is read by one numpy pass when it is a
# regular list of numbers, and must come out exactly as reading element by element gives.
JSON_DATA: list[tuple[list[int], object]] = [
    ([4], [0.1, -2.5, 1e-45, 3.0e38]),
    ([4], [1, 2, 3, 2**40]),
    ([2], [True, 1.5]),
    ([2], [True, False]),
    ([2], [16777217, 2**60 + 1]),
    ([2, 2], [[1.5, 2], [3, 4.25]]),
    ([1, 2], [[[1.0, 2.0]]]),  # nested deeper than the shape
    ([3], [1.0, [2.0], 3.0]),  # ragged
    ([2], [1.0, None]),
    ([2], [1.0, "NaN"]),
    ([2], [1.0, {"a": 1}]),
    ([1], [2**70]),
    ([1], [2**64 - 1]),
    ([3], [1.0, 2.0]),  # too few
    ([0, 3], []),
]


@pytest.mark.parametrize("datatype", [d for d in V2_TO_NUMPY if d != "BYTES"])
@pytest.mark.parametrize(("shape", "data"), JSON_DATA, ids=lambda v: json.dumps(v)[:24])
def test_numbers_read_at_c_speed_are_what_reading_each_element_gives(
    datatype: str, shape: list[int], data: object
) -> None:
    def outcome(read: Callable[[], np.ndarray]) -> tuple[str, object]:
        try:
            with np.errstate(all="ignore"):
                array = read()
        except InputError as exc:
            return "error", str(exc)
        return str(array.dtype), (array.shape, array.tobytes())

    count = int(np.prod(shape))
    fast = outcome(lambda: decode_json("x", datatype, shape, data))
    each = outcome(lambda: _decode_each("x", datatype, shape, count, data, None))
    assert fast == each


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("INT8", 300),
        ("INT8", -129),
        ("UINT8", -1),
        ("INT16", 40_000),
        ("UINT16", 70_000),
        ("INT32", 2**40),
        ("UINT32", 2**33),
        ("UINT32", 2**64 - 1),
        ("UINT64", -1),
        ("INT64", 2**63),
        ("UINT64", 2**64),
    ],
)
@pytest.mark.parametrize("regular", [True, False], ids=["one list", "ragged"])
def test_an_integer_outside_its_datatype_is_refused_naming_it(
    datatype: str, value: int, regular: bool
) -> None:
    """numpy wraps such a value (INT8 300 became 44, UINT8 -1 became 255) or fails with a
    message about C longs; the request gets a 400 naming the element, its value and the range."""
    data: object = [1, value] if regular else [[1], value]
    shape = [2] if regular else [2, 1]
    with pytest.raises(
        InputError, match=rf"input 'x'.*element 1 \({value}\) is outside {datatype}"
    ):
        decode_json("x", datatype, shape, data)


def test_integers_at_the_ends_of_their_datatype_are_read() -> None:
    for datatype in ("INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64"):
        info = np.iinfo(V2_TO_NUMPY[datatype])
        got = decode_json("x", datatype, [2], [int(info.min), int(info.max)])
        assert got.tolist() == [info.min, info.max], datatype


def test_one_long_text_among_many_numbers_is_named_without_a_text_array() -> None:
    """numpy reads numbers and text together as a text array as wide as the longest element:
    20,001 elements and one 20,000-character string would be 1.6 GB. The reader refuses it
    naming the element, from a body of 110 kB, without that allocation."""
    data = [0.5] * 20_000 + ["x" * 20_000]
    with refused_within(50_000_000, r"element 20000 is str 'xxx"):
        decode_json("x", "FP32", [20_001], data)


@contextmanager
def refused_within(peak_bytes: int, match: str) -> Iterator[None]:
    """The block raises an `InputError` matching `match` having allocated at most
    `peak_bytes` on the way (tracemalloc's peak): a refusal that comes before the work."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=match):
            yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < peak_bytes, peak


# -- a binary BYTES tensor longer than its shape (review finding 1) ------------------------------
def bytes_body(count: int) -> bytes:
    """`count` two-byte BYTES elements, each behind its 4-byte length (6 bytes an element)."""
    return (struct.pack("<I", 2) + b"ab") * count


def test_an_over_long_binary_bytes_tensor_is_refused_at_the_first_element_too_many() -> None:
    """The header says one element; the data holds two good ones and then a length prefix
    of 4 GiB, which would fail on its own. Reading every element before counting them
    answered with the garbage prefix's error; the refusal now comes at the second element,
    so nothing after it is read."""
    raw = bytes_body(2) + struct.pack("<I", 0xFFFFFFFF) + b"garbage"
    with pytest.raises(InputError) as caught:
        decode_binary("text", "BYTES", [1], raw)
    assert str(caught.value) == (
        "input 'text': shape [1] needs 1 elements but data has more than 1"
    )


def test_an_over_long_binary_bytes_tensor_builds_no_elements() -> None:
    """One element announced, two million sent (12 MB): every element became a Python bytes
    object and then an object array before the count was checked (about 150 MB and a second
    of the event loop for this body; 750 MB and 5 s for 57 MB on a real server)."""
    raw = bytes_body(2_000_000)
    with refused_within(1_000_000, r"input 'text': shape \[1\] needs 1 elements"):
        decode_binary("text", "BYTES", [1], raw)


def test_a_short_binary_bytes_tensor_names_its_count() -> None:
    with pytest.raises(InputError, match=r"shape \[3\] needs 3 elements but data has 2$"):
        decode_binary("text", "BYTES", [3], bytes_body(2))
    assert decode_binary("text", "BYTES", [2, 1], bytes_body(2)).tolist() == [[b"ab"], [b"ab"]]


# -- Seldon v1 plain values that numpy would change (review finding 6) ---------------------------
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([2**63 + 5], r"element 0 \(9223372036854775813\) is outside INT64's range"),
        ([[2**64 - 1]], r"element 0 \(18446744073709551615\) is outside INT64's range"),
        ([[1], [2**64 - 1]], r"element 1 \(18446744073709551615\) is outside INT64's range"),
        ([0.5, 2**63], r"element 1 \(9223372036854775808\) is outside INT64's range"),
        ([1, "a"], r"mixed or nested data \(int\)"),
        ([["a"], [2.5]], r"mixed or nested data \(float\)"),
        ([1.0, 1e300], r"element 1 \(1e\+300\) overflows FP32"),
        ([-1e39], r"element 0 \(-1e\+39\) overflows FP32"),
    ],
)
def test_a_plain_seldon_value_numpy_would_change_is_refused_naming_it(
    value: object, problem: str
) -> None:
    """`np.array(ndarray)` (what seldon-core does) reads 2**63+5 as uint64, which int64
    wrapped to a negative number, reads [1, 'a'] as the texts '1' and 'a', and 1e300 became
    inf as FP32: each is refused, as the V2 codecs refuse the same values."""
    for read in (infer_plain, decode_seldon):
        with pytest.raises(InputError, match=rf"^input 'x': .*{problem}"):
            read("x", value)


def test_plain_seldon_values_in_range_are_read_as_before() -> None:
    assert infer_plain("x", [2**63 - 1]).tolist() == [2**63 - 1]
    assert infer_plain("x", [1e38, float("inf")]).dtype == np.float32
    assert infer_plain("x", [["a", "b"]]).tolist() == [[b"a", b"b"]]


# -- lossy number conversions (review finding 7) -------------------------------------------------
LOSSY: list[tuple[str, list[object], str]] = [
    ("INT32", [1.5, -2.7], r"element 0 \(1.5\) is not an integer"),
    ("UINT8", [1, 3.99], r"element 1 \(3.99\) is not an integer"),
    ("INT64", [2.0, 0.5], r"element 1 \(0.5\) is not an integer"),
    ("BOOL", [1, 2], r"element 1 \(2\) is not 0, 1, true or false"),
    ("BOOL", [0, -1], r"element 1 \(-1\) is not 0, 1, true or false"),
    ("BOOL", [True, 0.5], r"element 1 \(0.5\) is not 0, 1, true or false"),
    ("FP16", [1e10, 70000.0], r"element 0 \(10000000000.0\) overflows FP16"),
    ("FP16", [1, 70000], r"element 1 \(70000\) overflows FP16"),
    ("FP32", [1.0, 1e39], r"element 1 \(1e\+39\) overflows FP32"),
]


@pytest.mark.parametrize(("datatype", "data", "problem"), LOSSY, ids=lambda v: str(v)[:20])
@pytest.mark.parametrize("regular", [True, False], ids=["one list", "ragged"])
def test_a_number_its_datatype_would_change_is_refused_naming_it(
    datatype: str, data: list[object], problem: str, regular: bool
) -> None:
    """INT32 [1.5, -2.7] was answered as [1, -2], BOOL [2, -1] as [True, True] and FP16 1e10
    as inf (written back as null): the value changed without a word, which this project
    refuses for integers outside their range. Each is now a 400 naming the element."""
    body: object = data if regular else [[data[0]], data[1]]
    shape = [2] if regular else [2, 1]
    with pytest.raises(InputError, match=rf"^input 'x': data is not valid {datatype}: {problem}"):
        decode_json("x", datatype, shape, body)


def test_numbers_their_datatype_holds_exactly_are_read() -> None:
    assert decode_json("x", "INT32", [3], [1.0, -2.0, 3]).tolist() == [1, -2, 3]
    assert decode_json("x", "BOOL", [4], [0, 1, 1.0, False]).tolist() == [0, 1, 1, 0]
    assert decode_json("x", "UINT8", [2, 1], [[255.0], [0]]).tolist() == [[255], [0]]
    half = decode_json("x", "FP16", [3], [65504.0, float("inf"), float("-inf")])
    assert half.tolist() == [65504.0, float("inf"), float("-inf")]
    assert decode_json("x", "FP32", [1], [1e-50]).tolist() == [0.0]  # underflow is rounding


def test_a_bytes_element_holding_a_lone_surrogate_is_refused_naming_it() -> None:
    """The standard library's JSON reader lets `"\\ud800"` through; encoding it failed with
    UnicodeEncodeError, a 500 (review finding 4)."""
    with pytest.raises(InputError, match=r"^input 'x' row 1: BYTES element 1 is not text: .*"):
        decode_json("x", "BYTES", [2], ["ok", "\ud800"])
