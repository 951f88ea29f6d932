"""Image input decoding: formats, base64, pixel tensors, and the decompression-bomb guard."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from infergraph.components.image_decoding import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_pixel_values,
    decode_image,
    decode_images,
    image_or_pixels,
    max_image_pixels,
    processor_input_size,
)
from infergraph.components.parameters import as_bool, as_int
from infergraph.components.text import decode_texts
from infergraph.errors import InputError, PayloadTooLargeError, SettingsError
from tests.vision_fixtures import jpeg, png, png_bomb


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_decodes_common_formats_to_rgb() -> None:
    rgba = Image.new("RGBA", (10, 8), (255, 0, 0, 0))  # fully transparent -> white
    gray = Image.new("L", (5, 4), 100)
    palette = Image.new("P", (6, 6), 3)
    for data in (jpeg(1), png((1, 2, 3)), encoded(rgba, "PNG"), encoded(gray, "BMP"),
                 encoded(palette, "GIF"), encoded(gray, "WEBP")):  # fmt: skip
        image = decode_image(data, "image", 0, DEFAULT_MAX_IMAGE_PIXELS)
        assert image.mode == "RGB"
    transparent = decode_image(encoded(rgba, "PNG"), "image", 0, DEFAULT_MAX_IMAGE_PIXELS)
    assert transparent.getpixel((0, 0)) == (255, 255, 255)


def test_base64_and_data_urls_are_accepted_when_bytes_are_not_an_image() -> None:
    data = png((10, 20, 30), (7, 5))
    for text in (
        base64.b64encode(data),
        base64.b64encode(data) + b"\n",
        b"data:image/png;base64," + base64.b64encode(data),
        base64.urlsafe_b64encode(data).rstrip(b"="),
    ):
        image = decode_image(text, "image", 0, DEFAULT_MAX_IMAGE_PIXELS)
        assert image.size == (7, 5) and image.getpixel((0, 0)) == (10, 20, 30)


def test_undecodable_bytes_name_input_and_row() -> None:
    rows = np.array([png((0, 0, 0)), b"definitely not an image"], dtype=object)
    with pytest.raises(InputError) as info:
        decode_images(rows, "image", DEFAULT_MAX_IMAGE_PIXELS)
    assert info.value.input_name == "image" and info.value.index == 1
    assert "input 'image' row 1" in str(info.value)
    # base64 of something that is not an image
    with pytest.raises(InputError, match="not an image"):
        decode_image(base64.b64encode(b"hello world!"), "img", 0, DEFAULT_MAX_IMAGE_PIXELS)
    # a truncated PNG: the header parses, the pixels do not
    with pytest.raises(InputError, match="row 3"):
        decode_image(png((9, 9, 9), (300, 300))[:120], "image", 3, DEFAULT_MAX_IMAGE_PIXELS)
    with pytest.raises(InputError, match="empty"):
        decode_image(b"", "image", 0, DEFAULT_MAX_IMAGE_PIXELS)


def test_decompression_bomb_rejected_from_the_header_without_decoding() -> None:
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 200_000
    started = time.perf_counter()
    rows = np.array([png((1, 1, 1)), bomb], dtype=object)
    with pytest.raises(PayloadTooLargeError) as info:
        decode_images(rows, "image", DEFAULT_MAX_IMAGE_PIXELS)
    assert time.perf_counter() - started < 2.0  # a decode of 400 MP would take far longer
    assert info.value.input_name == "image" and info.value.index == 1
    assert "20000x20000" in str(info.value) or "too large" in str(info.value)
    # base64 text of a bomb is caught the same way
    with pytest.raises(PayloadTooLargeError):
        decode_image(base64.b64encode(bomb), "image", 0, DEFAULT_MAX_IMAGE_PIXELS)
    # a configurable limit: an ordinary 100x100 image over a 5000-pixel limit
    with pytest.raises(PayloadTooLargeError, match="max_image_pixels"):
        decode_image(png((0, 0, 0), (100, 100)), "image", 0, 5000)
    # below PIL's own warning threshold, our limit still applies (20 MP > 10 MP)
    with pytest.raises(PayloadTooLargeError, match="over the limit of 10000000"):
        decode_image(png_bomb(5000, 4000), "image", 0, 10_000_000)


def test_pixel_values_checks_dtype_shape_size_and_values() -> None:
    good = np.zeros((2, 3, 8, 8), dtype=np.float32)
    assert check_pixel_values(good, "pixel_values", (8, 8)) is good
    cases = [
        (good.astype(np.float64), "expected FP32"),
        (np.zeros((3, 8, 8), dtype=np.float32), "expected shape"),
        (np.zeros((2, 1, 8, 8), dtype=np.float32), "3 channels"),
        (np.zeros((2, 3, 8, 9), dtype=np.float32), "8 x 8"),
        (np.zeros((0, 3, 8, 8), dtype=np.float32), "empty batch"),
    ]
    for array, message in cases:
        with pytest.raises(InputError, match=message) as info:
            check_pixel_values(array, "pixel_values", (8, 8))
        assert info.value.input_name == "pixel_values"
    bad = good.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="row 1"):
        check_pixel_values(bad, "pixel_values", (8, 8))
    assert check_pixel_values(np.zeros((1, 3, 5, 7), np.float32), "p", None).shape[3] == 7


def test_image_or_pixels_and_text_helpers() -> None:
    assert image_or_pixels({}, "image", "pixel_values", None, 100) is None
    both = {
        "image": np.array([png((0, 0, 0))], dtype=object),
        "pixel_values": np.zeros((1, 3, 2, 2), np.float32),
    }
    with pytest.raises(InputError, match="not both"):
        image_or_pixels(both, "image", "pixel_values", None, DEFAULT_MAX_IMAGE_PIXELS)
    with pytest.raises(InputError, match="empty batch"):
        decode_images(np.array([], dtype=object), "image", DEFAULT_MAX_IMAGE_PIXELS)
    with pytest.raises(InputError, match="BYTES"):
        decode_images(np.zeros(3, dtype=np.float32), "image", DEFAULT_MAX_IMAGE_PIXELS)
    assert decode_texts("text", np.array([b"caf\xc3\xa9", "x"], dtype=object)) == ["café", "x"]
    with pytest.raises(InputError, match="row 1"):
        decode_texts("text", np.array([b"ok", b"\xff\xfe"], dtype=object))
    assert as_bool("false", "normalize") is False and as_bool(True, "normalize") is True
    with pytest.raises(InputError, match="normalize"):
        as_bool("maybe", "normalize")
    with pytest.raises(InputError, match=r"out of range; allowed 1\.\.8"):
        as_int(9, "num_beams", 1, 8)
    assert max_image_pixels({}) == DEFAULT_MAX_IMAGE_PIXELS
    with pytest.raises(SettingsError):
        max_image_pixels({"max_image_pixels": "lots"})


def test_processor_input_size() -> None:
    from transformers import CLIPImageProcessor, DetrImageProcessor, SiglipImageProcessor

    siglip = SiglipImageProcessor(size={"height": 384, "width": 384})
    assert processor_input_size(siglip) == (384, 384)
    clip = CLIPImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    assert processor_input_size(clip) == (224, 224)
    detr = DetrImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333})
    assert processor_input_size(detr) is None


@pytest.mark.parametrize("size", [(1, 3000), (3000, 1), (2, 200_000)])
def test_a_thin_image_is_refused_before_a_resize_blows_it_up(size: tuple[int, int]) -> None:
    """Resizing the shorter side to a model's size scales the longer one alike: a 1 x 3000
    PNG of 99 bytes, well under the pixel limit, took 800 MB in the preprocessor, and a 1 x
    12000 one a MemoryError. Extreme shapes are refused from the header, naming the row."""
    from infergraph.components.base import ComponentSettings
    from infergraph.components.image_preprocessing import ImagePreprocessor

    thin = png((10, 20, 30), size)
    with pytest.raises(InputError, match="aspect ratio") as info:
        decode_image(thin, "image", 2, DEFAULT_MAX_IMAGE_PIXELS)
    assert info.value.input_name == "image" and info.value.index == 2
    pre = ImagePreprocessor(ComponentSettings(model_uri="", warmup=False))
    pre.start()
    ok = png((1, 2, 3), (40, 30))
    with pytest.raises(InputError, match="aspect ratio"):
        pre.prepare({"image": np.array([ok, thin], dtype=object)}, {})
    assert pre.prepare({"image": np.array([ok], dtype=object)}, {}).rows[0].shape == (3, 224, 224)
