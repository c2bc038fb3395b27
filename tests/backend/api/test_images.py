"""The upload decoder: clear rejections with the right status, first frames of animations."""

import time

import numpy as np
import pytest
from PIL import Image

from backend.api.images import UploadRejected, decode_upload

from . import images


def status_of(data: bytes, max_pixels: int = 40_000_000) -> int:
    with pytest.raises(UploadRejected) as info:
        decode_upload(data, max_pixels)
    assert str(info.value)  # always a message
    return info.value.status


def test_empty_file_is_422():
    assert status_of(b"") == 422


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image", images.encode(images.pattern(), "GIF"), images.encode(images.pattern(), "BMP")],
    ids=["text", "gif", "bmp"],
)
def test_not_an_accepted_format_is_415(data):
    assert status_of(data) == 415


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_is_422(fmt):
    data = images.encode(images.pattern(64, 64), fmt)
    assert status_of(data[: len(data) // 2]) == 422


def test_pixel_bomb_is_rejected_from_the_header():
    data = images.png_with_size(50_000, 50_000)  # 2.5 gigapixels claimed, 70 bytes sent
    start = time.perf_counter()
    assert status_of(data) == 413
    assert time.perf_counter() - start < 1.0


def test_pixel_cap_is_inclusive():
    data = images.encode(images.pattern(40, 25), "PNG")
    assert decode_upload(data, max_pixels=1000).size == (40, 25)
    assert status_of(data, max_pixels=999) == 413


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animation_gives_its_first_frame(fmt):
    data, first = images.animated(fmt)
    assert getattr(Image.open(__import__("io").BytesIO(data)), "n_frames", 1) == 2
    decoded = decode_upload(data, 40_000_000)
    assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(first))
