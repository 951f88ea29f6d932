"""Content-type codecs for BYTES elements, in one registry keyed by `content_type`.

As MLServer's `codecs/base.py` registry: a tensor's `parameters.content_type` picks the codec
that turns its wire elements into bytes and back. Numbers need none (the numpy default, the
datatype table says how to read them). Two content types are registered:

- `str`: UTF-8 text, what a client writes for a text input and what we answer for text;
- `base64`: binary data (images, crops) in JSON, which has no bytes type.

A content type nobody registered reads as the default: text as its UTF-8 bytes, bytes as
they are. Encoding picks the first registered codec that can represent every element, in
registration order, so text stays text and other bytes go base64.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Protocol


class BytesCodec(Protocol):
    """How one content type reads BYTES elements off the wire and writes them back."""

    content_type: str

    def decode(self, raw: bytes) -> bytes:
        """One element's wire bytes (text already UTF-8 encoded) -> its value."""
        ...

    def encode(self, items: Sequence[object]) -> list[str] | None:
        """Elements -> their JSON strings, or None when this content type cannot hold them."""
        ...


def _as_bytes(item: object) -> bytes:
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return str(item).encode("utf-8")


class StrCodec:
    """UTF-8 text: elements are their own text."""

    content_type = "str"

    def decode(self, raw: bytes) -> bytes:
        return raw

    def encode(self, items: Sequence[object]) -> list[str] | None:
        try:
            # Text stays text, even after a hop through a pass-through (bytes in, bytes out).
            return [
                x.decode("utf-8") if isinstance(x, (bytes, bytearray)) else str(x) for x in items
            ]
        except UnicodeDecodeError:
            return None


class Base64Codec:
    """Binary data as base64 text; decoding refuses anything that is not strict base64."""

    content_type = "base64"

    def decode(self, raw: bytes) -> bytes:
        return base64.b64decode(raw, validate=True)

    def encode(self, items: Sequence[object]) -> list[str] | None:
        return [base64.b64encode(_as_bytes(x)).decode("ascii") for x in items]


class _Default:
    """No (or an unregistered) content type: the elements' own bytes."""

    content_type = ""

    def decode(self, raw: bytes) -> bytes:
        return raw

    def encode(self, items: Sequence[object]) -> list[str] | None:
        return None


CODECS: dict[str, BytesCodec] = {}
DEFAULT: BytesCodec = _Default()


def register(codec: BytesCodec) -> BytesCodec:
    """Add a content type; a later registration of the same name replaces the earlier."""
    CODECS[codec.content_type] = codec
    return codec


register(StrCodec())
register(Base64Codec())


def codec_for(content_type: object) -> BytesCodec:
    """The codec a tensor's `content_type` parameter names; the default for any other."""
    return CODECS.get(content_type, DEFAULT) if isinstance(content_type, str) else DEFAULT


def encode_elements(
    items: Sequence[object], content_type: str | None = None
) -> tuple[list[str], str]:
    """BYTES elements -> (JSON strings, the content type that wrote them).

    `content_type` forces one codec (the router forwards binary inputs as base64); without it
    the first registered codec that can hold every element is used.
    """
    forced = CODECS.get(content_type) if content_type else None
    for codec in [forced] if forced is not None else list(CODECS.values()):
        encoded = codec.encode(items)
        if encoded is not None:
            return encoded, codec.content_type
    encoded = CODECS["base64"].encode(items) or []
    return encoded, "base64"
