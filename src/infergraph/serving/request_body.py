"""A request body as its sender wrote it: inflated where its Content-Encoding says so.

Clients compress large requests: tritonclient's `request_compression_algorithm` sends gzip
or deflate (the zlib format, as HTTP's "deflate" means), both of which Triton's HTTP endpoint
reads. MLServer's own `Request` gunzips (mlserver/rest/requests.py:17-23), so the runtime's
routes, which skip MLServer's request class (`rest_fast_path`), inflate here, and read
deflate as Triton does. A body is inflated at most to `MAX_INFLATED_BYTES`: a few kilobytes
of gzip can inflate to gigabytes, which would take the server's memory with it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from infergraph.errors import InputError, PayloadTooLargeError

# Far above any batch the runtime serves (32 full-HD images as JSON base64 are about 10 MB);
# the local router reads bodies up to the same size (`runner.router.build_app`).
MAX_INFLATED_BYTES = 256 * 2**20
HEADER = "Content-Encoding"
# zlib's window bits for each coding: gzip's header and trailer, zlib's.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflated(body: bytes, encodings: Iterable[str]) -> bytes:
    """`body` with every content coding undone, the last applied first (RFC 9110 8.4).

    `encodings`: the request's Content-Encoding header values. An unknown coding, a body
    that is not what its coding says, or one that inflates past the limit raises, naming
    the coding.
    """
    codings = [c.strip().lower() for value in encodings for c in value.split(",")]
    for coding in reversed(codings):
        if coding not in ("", "identity"):
            body = _inflate(body, coding)
    return body


def _inflate(body: bytes, coding: str) -> bytes:
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise InputError(HEADER, f"'{coding}' is not a coding this server reads: gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise InputError(HEADER, f"the body is not {coding} data ({exc})") from None
    if inflater.unconsumed_tail or (not inflater.eof and len(out) == MAX_INFLATED_BYTES):
        raise PayloadTooLargeError(
            HEADER, f"the {coding} body inflates past {MAX_INFLATED_BYTES} bytes"
        )
    if not inflater.eof:
        raise InputError(HEADER, f"the {coding} body ends before its data does")
    return out
