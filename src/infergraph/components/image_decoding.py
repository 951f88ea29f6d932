"""Image input decoding shared by the vision families (pixels; container images are
infergraph.container_images).

Clients send images three ways: encoded bytes (JPEG/PNG/WebP... in a BYTES
tensor or a raw octet-stream body), base64 text (JSON clients that did not set
`content_type: base64`), or already-preprocessed FP32 pixels `[N, 3, H, W]`.
Every failure names the tensor and the row, so one bad image in a batch is
reported precisely, and image dimensions are checked from the header before any
pixel is decoded, so a small file claiming 400 megapixels cannot exhaust memory.

PIL is imported inside functions: graph validation imports component classes
without the model extras installed.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from infergraph.errors import InputError, PayloadTooLargeError, SettingsError

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# Longest side over shortest: resizing the shorter side to a model's input scales the longer
# alike, so a 1 x 3000 PNG of 99 bytes grew to 224 x 672,000 floats (800 MB) in a
# preprocessor; panoramas and receipts stay far under this.
MAX_ASPECT_RATIO = 50
_DATA_URL_MARK = b";base64,"


def max_image_pixels(options: Mapping[str, Any]) -> int:
    """The decompression-bomb limit (width * height) from a component's options."""
    value = options.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise SettingsError("max_image_pixels", f"must be an integer, got {value!r}") from None
    return max(limit, 1)


def _open_checked(data: bytes, name: str, index: int, max_pixels: int) -> Image:
    """Open lazily (header only), enforce the pixel limit, then decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns past its own limit; ours (checked below) is the one that applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLargeError(name, f"image too large to decode ({exc})", index) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _NotAnImage(str(exc)) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            name,
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (option max_image_pixels)",
            index,
        )
    if width == 0 or height == 0:
        raise InputError(name, f"image has an empty dimension ({width}x{height})", index)
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(
            name,
            f"image is {width}x{height}: its aspect ratio is over {MAX_ASPECT_RATIO}:1, which "
            "resizing to the model's input would blow up",
            index,
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image) or image
        if image.mode != "RGB":
            image = _to_rgb(image)
    except Exception as exc:  # truncated or corrupt pixel data; PIL raises many types
        raise InputError(name, f"image data is corrupt or truncated: {exc}", index) from exc
    return image


def _to_rgb(image: Image) -> Image:
    """RGB conversion that puts transparent pixels on white rather than black."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class _NotAnImage(Exception):
    """Internal: the bytes are not a recognised image format (maybe base64 text)."""


def _base64_payload(data: bytes) -> bytes | None:
    """Decode base64 text (optionally a data: URL); None when the bytes are not base64."""
    text = data.strip()
    if text.startswith(b"data:") and _DATA_URL_MARK in text:
        text = text.split(_DATA_URL_MARK, 1)[1]
    text = b"".join(text.split())
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None


def decode_image(data: bytes, name: str, index: int, max_pixels: int) -> Image:
    """One encoded image (or base64 of one) -> RGB PIL image, naming input and row on failure."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(name, f"expected encoded image bytes, got {type(data).__name__}", index)
    data = bytes(data)
    if not data:
        raise InputError(name, "empty image bytes", index)
    try:
        return _open_checked(data, name, index, max_pixels)
    except _NotAnImage as first:
        decoded = _base64_payload(data)
        if decoded is None:
            raise InputError(
                name, f"not a decodable image (and not base64 of one): {first}", index
            ) from None
        try:
            return _open_checked(decoded, name, index, max_pixels)
        except _NotAnImage as second:
            raise InputError(
                name, f"base64 text decodes to bytes that are not an image: {second}", index
            ) from None


def decode_images(array: np.ndarray, name: str, max_pixels: int) -> list[Image]:
    """A BYTES tensor of N encoded images -> N RGB images."""
    if array.dtype != object:
        raise InputError(name, f"expected a BYTES tensor of encoded images, got {array.dtype}")
    flat = array.reshape(-1)
    if flat.size == 0:
        raise InputError(name, "empty batch: at least one image is required")
    return [decode_image(item, name, i, max_pixels) for i, item in enumerate(flat)]


def check_pixel_values(
    array: np.ndarray, name: str, expected_hw: tuple[int, int] | None
) -> np.ndarray:
    """Validate preprocessed pixels: FP32 `[N, 3, H, W]` at the model's input size, finite."""
    if array.dtype != np.float32:
        dtype = "BYTES" if array.dtype == object else str(array.dtype)
        raise InputError(name, f"expected FP32 pixels, got {dtype}")
    if array.ndim != 4:
        raise InputError(name, f"expected shape [N, 3, H, W], got {list(array.shape)}")
    if array.shape[0] == 0:
        raise InputError(name, "empty batch: at least one row is required")
    if array.shape[1] != 3:
        raise InputError(
            name, f"expected 3 channels (shape [N, 3, H, W]), got shape {list(array.shape)}"
        )
    if expected_hw is not None and tuple(array.shape[2:]) != tuple(expected_hw):
        h, w = expected_hw
        raise InputError(
            name, f"expected H x W = {h} x {w} for this model, got shape {list(array.shape)}"
        )
    finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    if not finite.all():
        raise InputError(name, "pixel values contain NaN or infinity", int(np.argmin(finite)))
    return array


def processor_input_size(image_processor: Any) -> tuple[int, int] | None:
    """The fixed (H, W) a transformers image processor produces, None when it varies."""

    def hw(size: Any) -> tuple[int, int] | None:
        if size is None:
            return None
        if isinstance(size, int):
            return (size, size)
        get = size.get if isinstance(size, Mapping) else lambda k: getattr(size, k, None)
        height, width = get("height"), get("width")
        if height and width:
            return (int(height), int(width))
        return None

    if getattr(image_processor, "do_center_crop", False):
        cropped = hw(getattr(image_processor, "crop_size", None))
        if cropped:
            return cropped
    if getattr(image_processor, "do_resize", True):
        return hw(getattr(image_processor, "size", None))
    return None


def encode_png(image: Image) -> bytes:
    """PNG bytes of an image (detection crops travel this way)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_or_pixels(
    inputs: Mapping[str, np.ndarray],
    image_name: str,
    pixel_name: str,
    expected_hw: tuple[int, int] | None,
    max_pixels: int,
) -> tuple[str, list[Image] | np.ndarray] | None:
    """Pick whichever of the image forms a request sent: ('image', images) or ('pixels', array).

    Returns None when neither is present; sending both is an error because the
    rows would be ambiguous.
    """
    has_image = image_name in inputs
    has_pixels = pixel_name in inputs
    if has_image and has_pixels:
        raise InputError(pixel_name, f"send either '{image_name}' or '{pixel_name}', not both")
    if has_image:
        return "image", decode_images(inputs[image_name], image_name, max_pixels)
    if has_pixels:
        return "pixels", check_pixel_values(inputs[pixel_name], pixel_name, expected_hw)
    return None


def synthetic_png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A small random PNG for warm-up and examples (no files shipped with the package)."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return encode_png(PILImage.fromarray(pixels, "RGB"))
