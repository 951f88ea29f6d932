"""Every finite FP32, written as the REST runtime writes it and read back as JSON readers do.

The runtime writes FP32 outputs in FP32's shortest text (`tensors.v2json.encode_json_array`).
Most readers (Python's json, orjson, numpy from a list, JavaScript) parse a number to float64
and cast that to float32: a double rounding, which for a few decimals lands one ulp away.
This walks all 2**31 - 2**23 finite non-negative bit patterns (a sign changes no digit), 16 Mi
at a time, through the runtime's writer and back, and prints each pattern that does not come
back; the writer sends tensors holding those as float64 text. About 6 minutes on an idle core.

    .venv/bin/python benchmarks/fp32_json_exhaustive.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from infergraph.serving.binary import json_bytes
from infergraph.tensors.v2json import encode_json_array

CHUNK = 1 << 24
INFINITY = 0x7F800000


def shortest_text_mismatches(start: int, stop: int) -> list[int]:
    """Bit patterns in [start, stop) whose shortest text reads back to other bits via float64."""
    bits = np.arange(start, stop, dtype=np.uint64).astype(np.uint32)
    text = orjson.dumps(bits.view(np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
    back = np.array(orjson.loads(text), dtype=np.float64).astype(np.float32)
    return [int(b) for b in bits[back.view(np.uint32) != bits]]


def main() -> None:
    started = time.perf_counter()
    found: list[int] = []
    for start in range(0, INFINITY, CHUNK):
        found += shortest_text_mismatches(start, min(start + CHUNK, INFINITY))
    for pattern in found:
        value = np.array([pattern], np.uint32).view(np.float32)
        _, _, data, _ = encode_json_array(value)
        written = orjson.loads(json_bytes(data))
        exact = np.array(written, np.float64).astype(np.float32).view(np.uint32)[0] == pattern
        print(f"{pattern:#010x} {value[0]!r}: written {written}, reads back exactly: {exact}")
    print(f"{len(found)} of {INFINITY} patterns, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
