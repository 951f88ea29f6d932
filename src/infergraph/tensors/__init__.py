"""The one protocol layer for tensors, below the runner, the serving adapters and the load tester.

A decoded tensor is a numpy array (`infergraph.arrays.Array`); this package reads and writes it
in every wire form the project speaks, each in its own module over one datatype table
(`datatypes`) and one content-type codec registry for BYTES (`codecs`):

- `v2json`: the Open Inference Protocol's JSON tensor (REST, and MLServer's pydantic types);
- `binary`: the binary tensor extension's raw layout (also gRPC's `raw_*_contents`);
- `modelinfer`: the gRPC `ModelInfer` tensor (its typed contents fields);
- `seldon`: Seldon Core v1's `jsonData` tensors and plain `ndarray` values.

A whole request is one type over them, `request.InferRequest`, with a reader and a writer for
each form.
"""

from __future__ import annotations

from infergraph.tensors.binary import decode_binary, encode_binary
from infergraph.tensors.codecs import CODECS, BytesCodec, codec_for, register
from infergraph.tensors.datatypes import (
    NUMPY_TO_V2,
    V2_TO_NUMPY,
    datatype_of,
    element_count,
    empty,
    zero_row_shape,
)
from infergraph.tensors.modelinfer import CONTENTS_FIELD, encode_grpc, read_grpc
from infergraph.tensors.request import InferRequest
from infergraph.tensors.seldon import decode_seldon, encode_seldon, infer_plain
from infergraph.tensors.v2json import (
    Tensor,
    decode_json,
    encode_json,
    encode_json_array,
    from_tensor,
    to_tensor,
)

__all__ = [
    "CODECS",
    "CONTENTS_FIELD",
    "NUMPY_TO_V2",
    "V2_TO_NUMPY",
    "BytesCodec",
    "InferRequest",
    "Tensor",
    "codec_for",
    "datatype_of",
    "decode_binary",
    "decode_json",
    "decode_seldon",
    "element_count",
    "empty",
    "encode_binary",
    "encode_grpc",
    "encode_json",
    "encode_json_array",
    "encode_seldon",
    "from_tensor",
    "infer_plain",
    "read_grpc",
    "register",
    "to_tensor",
    "zero_row_shape",
]
