"""Request payloads: files from a folder, texts from JSONL, or synthetic generators.

A payload spec is one string so it fits a command line and a results file:

    synthetic:image[:224x224][:png|jpeg]   random image, encoded once
    synthetic:text[:32]                    random words (count)
    synthetic:audio[:1.0][:fp32|wav]       16 kHz noise, FP32 samples or a WAV file
    synthetic:tensor:1x3x224x224[:FP32]    raw tensor of that shape and datatype
    PATH/ (folder)                         images or audio files, by extension
    PATH.jsonl                             one text per line ("..." or {"text": "..."})

A size and a format may each be given alone and in either order (`synthetic:image:jpeg`);
a field a spec cannot take is refused by name. A folder or .jsonl gives its first
PAYLOAD_CAP (1000) items; the run warns when its source held more.

Every payload is built once here; protocols encode each once more into the exact
bytes sent, so nothing is encoded per request.
"""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from async_load_tester.errors import PayloadError
from infergraph.arrays import Array
from infergraph.tensors.binary import encode_binary, encode_bytes_tensor
from infergraph.tensors.datatypes import V2_TO_NUMPY

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
AUDIO_EXTS = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}
DEFAULT_INPUT_NAMES = {"image": "image", "text": "text", "audio": "audio", "tensor": "input"}
SAMPLE_RATE = 16_000
SYNTHETIC_VARIANTS = 4
# A folder or .jsonl gives at most this many payloads: each is encoded and held in memory
# before the run (a folder of large images would otherwise fill it); a run says when it cut.
PAYLOAD_CAP = 1000
SYNTHETIC_GRAMMAR = {
    "image": "synthetic:image[:WIDTHxHEIGHT][:png|jpeg]",
    "text": "synthetic:text[:WORDS]",
    "audio": "synthetic:audio[:SECONDS][:fp32|wav]",
    "tensor": "synthetic:tensor:SHAPE[:DATATYPE]",
}
_VOCABULARY = (
    "the a model graph latency token image cluster request fast slow queue batch gpu cpu "
    "seldon server cascade route ensemble replica price million inference tensor bytes "
    "open loop closed rate burst trace warm cold edge node"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True)
class InputTensor:
    """One request input: numeric `array`, or BYTES `items` (binary ones go base64 in JSON)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: Array | None = None
    items: tuple[bytes, ...] | None = None
    binary: bool = False

    def raw_bytes(self) -> bytes:
        """Binary-tensor layout (infergraph's): little-endian values, or length-prefixed bytes."""
        if self.array is not None:
            return encode_binary(self.array)[1]
        assert self.items is not None
        return encode_bytes_tensor(self.items)


@dataclass(frozen=True)
class Payload:
    """One request's inputs; `label` says where it came from (file name or generator)."""

    label: str
    inputs: tuple[InputTensor, ...]


def load_payloads(
    spec: str, input_name: str | None = None, seed: int = 0, limit: int = PAYLOAD_CAP
) -> list[Payload]:
    """Build the payloads a run rotates through; raises PayloadError before any load."""
    return load_payload_source(spec, input_name, seed, limit).payloads


@dataclass(frozen=True)
class PayloadSource:
    """The payloads a run uses, and how many its source holds (more than those when capped),
    so the run can say that it left some out."""

    payloads: list[Payload]
    available: int

    def cap_note(self, spec: str) -> str | None:
        """A warning when the source held more payloads than the run uses, else None."""
        if self.available <= len(self.payloads):
            return None
        return (
            f"--payload '{spec}': using the first {len(self.payloads)} of {self.available} "
            "payloads (the cap: every payload is encoded and held in memory before the run)"
        )


def load_payload_source(
    spec: str, input_name: str | None = None, seed: int = 0, limit: int = PAYLOAD_CAP
) -> PayloadSource:
    """`load_payloads`, with the count the source holds: a folder or .jsonl gives at most
    `limit` payloads, and the caller announces the rest rather than dropping them silently."""
    if spec.startswith("synthetic:"):
        payloads = _synthetic(spec, input_name, seed)
        return PayloadSource(payloads, len(payloads))
    path = Path(spec)
    if path.is_dir():
        return _folder(path, input_name, limit)
    if path.suffix == ".jsonl":
        return _jsonl(path, input_name, limit)
    if not path.exists():
        raise PayloadError(
            "--payload", f"'{spec}' is not a folder, a .jsonl file or synthetic:KIND"
        )
    raise PayloadError("--payload", f"'{spec}': expected a folder of files or a .jsonl of texts")


def _synthetic(spec: str, input_name: str | None, seed: int) -> list[Payload]:
    """A synthetic spec's payloads; a field it cannot take fails naming it and the grammar."""
    parts = spec.split(":")[1:]
    kind, args = parts[0], parts[1:]
    if kind not in SYNTHETIC_GRAMMAR:
        raise PayloadError(
            "--payload", f"'{spec}': unknown synthetic kind '{kind}' (image, text, audio, tensor)"
        )
    rng = np.random.default_rng(seed)
    name = input_name or DEFAULT_INPUT_NAMES.get(kind, "input")
    makers = {
        "image": _synthetic_image,
        "text": _synthetic_text,
        "audio": _synthetic_audio,
        "tensor": _synthetic_tensor,
    }
    try:
        return [makers[kind](rng, name, args, i) for i in range(SYNTHETIC_VARIANTS)]
    except ValueError as exc:
        raise PayloadError(
            "--payload", f"'{spec}': {exc}; expected {SYNTHETIC_GRAMMAR[kind]}"
        ) from None


def _size_and_format(args: list[str], formats: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Up to two optional fields, a size and a format, in either order: the README's
    `[:SIZE][:FORMAT]` reads as two independent parts, so `synthetic:image:jpeg` is a format."""
    size: str | None = None
    fmt: str | None = None
    for arg in args:
        if arg.lower() in formats and fmt is None:
            fmt = arg.lower()
        elif arg.lower() not in formats and size is None:
            size = arg
        else:
            raise ValueError(f"unexpected field '{arg}'")
    return size, fmt


def _no_extra(args: list[str], allowed: int) -> None:
    """Refuse fields past the `allowed` ones by name: an ignored typo would go unnoticed."""
    if len(args) > allowed:
        raise ValueError(f"unexpected field '{args[allowed]}'")


def _dims(text: str, sep: str = "x") -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split(sep))
    except ValueError:
        raise ValueError(f"shape '{text}' is not whole numbers like 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"shape '{text}' needs positive dimensions like 1x3x224x224")
    return dims


def _synthetic_text(rng: np.random.Generator, name: str, args: list[str], i: int) -> Payload:
    _no_extra(args, 1)
    try:
        words = int(args[0]) if args else 32
    except ValueError:
        raise ValueError(f"word count '{args[0]}' is not a whole number") from None
    if words <= 0:
        raise ValueError("word count must be > 0")
    return _text_payload(" ".join(rng.choice(_WORDS, size=words)), name, f"synthetic-text-{i}")


def _image_size(text: str | None) -> tuple[int, int]:
    if text is None:
        return 224, 224
    dims = _dims(text)
    if len(dims) != 2:
        raise ValueError(f"size '{text}' is not WIDTHxHEIGHT")
    return dims[0], dims[1]


def _synthetic_image(rng: np.random.Generator, name: str, args: list[str], i: int) -> Payload:
    size, fmt = _size_and_format(args, ("png", "jpeg", "jpg"))
    width, height = _image_size(size)
    # Smooth gradients plus noise: compresses like a photo, not like pure noise.
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            (xx * 255 // max(width - 1, 1)),
            (yy * 255 // max(height - 1, 1)),
            np.full_like(xx, 40 * i),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.integers(-20, 20, size=base.shape), 0, 255).astype(np.uint8)
    data = encode_png(pixels) if fmt in (None, "png") else _encode_jpeg(pixels)
    return Payload(
        f"synthetic-image-{i}", (InputTensor(name, "BYTES", (1,), items=(data,), binary=True),)
    )


def encode_png(pixels: npt.NDArray[np.uint8]) -> bytes:
    """Encode an HxWx3 uint8 array as PNG with the standard library (no Pillow needed)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _encode_jpeg(pixels: npt.NDArray[np.uint8]) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("jpeg needs Pillow installed (png works without it)") from None
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _synthetic_audio(rng: np.random.Generator, name: str, args: list[str], i: int) -> Payload:
    size, fmt = _size_and_format(args, ("fp32", "wav"))
    try:
        seconds = float(size) if size is not None else 1.0
    except ValueError:
        raise ValueError(f"length '{size}' is not a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= 600:
        raise ValueError("audio length must be in (0, 600] seconds")
    samples = (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)
    label = f"synthetic-audio-{i}"
    if fmt in (None, "fp32"):
        return Payload(
            label, (InputTensor(name, "FP32", (1, samples.size), array=samples[None, :]),)
        )
    return Payload(
        label, (InputTensor(name, "BYTES", (1,), items=(wav_bytes(samples),), binary=True),)
    )


def wav_bytes(samples: npt.NDArray[np.floating[Any]], rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono WAV from float samples in [-1, 1]."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def _synthetic_tensor(rng: np.random.Generator, name: str, args: list[str], i: int) -> Payload:
    if not args:
        raise ValueError("give a shape: synthetic:tensor:1x3x224x224[:FP32]")
    _no_extra(args, 2)
    shape = _dims(args[0])
    datatype = (args[1] if len(args) > 1 else "FP32").upper()
    if datatype not in V2_TO_NUMPY:
        raise ValueError(f"datatype '{datatype}' (one of {', '.join(V2_TO_NUMPY)})")
    dtype = V2_TO_NUMPY[datatype]
    if np.issubdtype(dtype, np.floating):
        array = rng.standard_normal(shape).astype(dtype)
    elif dtype is np.bool_:
        array = rng.integers(0, 2, size=shape).astype(bool)
    else:
        array = rng.integers(0, 100, size=shape).astype(dtype)
    return Payload(f"synthetic-tensor-{i}", (InputTensor(name, datatype, shape, array=array),))


def _text_payload(text: str, name: str, label: str) -> Payload:
    return Payload(label, (InputTensor(name, "BYTES", (1,), items=(text.encode(),)),))


def _folder(path: Path, input_name: str | None, limit: int) -> PayloadSource:
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise PayloadError("--payload", f"cannot read folder '{path}': {exc.strerror}") from None
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTS]
    if images and audio:
        raise PayloadError("--payload", f"'{path}' mixes images and audio; use one kind per run")
    chosen, kind = (images, "image") if images else (audio, "audio")
    if not chosen:
        raise PayloadError(
            "--payload",
            f"'{path}' holds no image ({', '.join(sorted(IMAGE_EXTS))}) "
            f"or audio ({', '.join(sorted(AUDIO_EXTS))}) files",
        )
    name = input_name or DEFAULT_INPUT_NAMES[kind]
    payloads = []
    for file in chosen[:limit]:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise PayloadError("--payload", f"cannot read '{file}': {exc.strerror}") from None
        if not data:
            raise PayloadError("--payload", f"'{file}' is empty")
        payloads.append(
            Payload(file.name, (InputTensor(name, "BYTES", (1,), items=(data,), binary=True),))
        )
    return PayloadSource(payloads, len(chosen))


def _jsonl(path: Path, input_name: str | None, limit: int) -> PayloadSource:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PayloadError("--payload", f"cannot read '{path}': {exc}") from None
    name = input_name or DEFAULT_INPUT_NAMES["text"]
    payloads = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PayloadError("--payload", f"{path}:{number}: not JSON ({exc})") from None
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text:
            raise PayloadError(
                "--payload", f'{path}:{number}: expected a string or {{"text": "..."}}'
            )
        payloads.append(_text_payload(text, name, f"{path.name}:{number}"))
        if len(payloads) >= limit:
            rest = sum(1 for later in lines[number:] if later.strip())
            return PayloadSource(payloads, len(payloads) + rest)
    if not payloads:
        raise PayloadError("--payload", f"'{path}' holds no texts")
    return PayloadSource(payloads, len(payloads))
