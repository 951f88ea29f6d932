"""Payload specs as the README writes them, and payload sources larger than the cap."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from async_load_tester.cli import app
from async_load_tester.errors import PayloadError
from async_load_tester.payloads import load_payloads
from typer.testing import CliRunner

from tests.loadtest_servers import loadtest_server


def _only_bytes(spec: str) -> bytes:
    """The encoded item of a spec's first payload (image and WAV payloads hold one)."""
    items = load_payloads(spec)[0].inputs[0].items
    assert items is not None and len(items) == 1
    return items[0]


def test_a_format_alone_is_a_format() -> None:
    """`synthetic:image[:224x224][:png|jpeg]` reads as two optional parts: either may be
    given alone, in either order (it used to read `jpeg` as a width)."""
    assert _only_bytes("synthetic:image:jpeg").startswith(b"\xff\xd8")  # JPEG's SOI marker
    assert _only_bytes("synthetic:image:png:32x16").startswith(b"\x89PNG")
    wav = _only_bytes("synthetic:audio:wav")
    assert wav.startswith(b"RIFF") and len(wav) == 44 + 16_000 * 2  # 1 s of 16-bit 16 kHz
    audio = load_payloads("synthetic:audio:fp32:0.5")[0].inputs[0]
    assert (audio.datatype, audio.shape) == ("FP32", (1, 8000))


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("synthetic:image:224", ["'224'", "WIDTHxHEIGHT"]),
        ("synthetic:text:8:junk", ["'junk'", "synthetic:text[:WORDS]"]),
        ("synthetic:image:32x16:png:junk", ["'junk'", "synthetic:image[:WIDTHxHEIGHT]"]),
        ("synthetic:audio:1:wav:wav", ["'wav'", "synthetic:audio[:SECONDS][:fp32|wav]"]),
        ("synthetic:tensor:1x4:FP32:junk", ["'junk'", "synthetic:tensor:SHAPE[:DATATYPE]"]),
        ("synthetic:audio:loud", ["'loud'", "synthetic:audio[:SECONDS][:fp32|wav]"]),
    ],
)
def test_bad_fields_are_named(spec: str, names: list[str]) -> None:
    """A field the spec cannot take fails naming the spec, the field and the grammar; extra
    fields used to be ignored and a bare size to fail with Python's unpacking message."""
    with pytest.raises(PayloadError) as info:
        load_payloads(spec)
    assert info.value.option == "--payload"
    assert f"'{spec}'" in str(info.value)
    for name in names:
        assert name in str(info.value), str(info.value)


def test_a_jsonl_over_the_cap_is_announced(tmp_path: Path) -> None:
    """A source holding more than the 1000-payload cap runs on the first 1000 and says so in
    the run's warnings (stderr and results.json); it used to be cut silently."""
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(f'"text {i}"\n' for i in range(1005)))
    with loadtest_server() as server:
        result = CliRunner().invoke(
            app,
            ["run", "--target", server.url, "--model", "m", "--payload", str(texts),
             "--rate", "20", "--duration", "0.2", "--warmup", "0", "--no-progress", "--json"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["target"]["payloads"] == 1000
    assert any("first 1000 of 1005" in w for w in data["warnings"]), data["warnings"]
