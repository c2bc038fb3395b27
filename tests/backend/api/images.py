"""Upload files of every awkward kind, built in memory (shared by the decoder and the HTTP tests)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def pattern(width: int = 40, height: int = 24, seed: int = 0) -> Image.Image:
    """An RGB image with structure (so rotations and channel mix-ups change the result)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 3] = 255
    return Image.fromarray(pixels)


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but whose data is tiny (a decompression-bomb header)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def animated(fmt: str) -> tuple[bytes, Image.Image]:
    """A two-frame animation and its first frame."""
    first, second = pattern(seed=1), pattern(seed=2)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    return encode(first, fmt, save_all=True, append_images=[second], duration=100, loop=0, **kwargs), first


def exif_rotated() -> tuple[bytes, Image.Image]:
    """A JPEG stored sideways with EXIF orientation 6 (display rotated 90 degrees clockwise), and the upright
    image a viewer shows (decoded from the same JPEG, so compression does not matter)."""
    stored = pattern(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    upright = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    return data, upright


def sixteen_bit() -> tuple[bytes, Image.Image]:
    """A 16-bit greyscale PNG and its 8-bit equivalent (high byte)."""
    values = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64 % 65536).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    eight = Image.fromarray(np.round(values / 65535 * 255).astype(np.uint8))
    return encode(image, "PNG"), eight


def cmyk() -> tuple[bytes, Image.Image]:
    """A CMYK JPEG and the RGB image Pillow reads from it."""
    data = encode(pattern().convert("CMYK"), "JPEG", quality=95)
    return data, Image.open(io.BytesIO(data)).convert("RGB")


def palette() -> tuple[bytes, Image.Image]:
    image = pattern().quantize(16)
    return encode(image, "PNG"), image.convert("RGB")


def rgba(background: int) -> tuple[bytes, Image.Image]:
    """A half-transparent RGBA PNG and its composite over a ``background`` grey level."""
    rgb = pattern()
    alpha = Image.new("L", rgb.size, 0)
    alpha.paste(255, (0, 0, rgb.width // 2, rgb.height))
    image = rgb.copy()
    image.putalpha(alpha)
    canvas = Image.new("RGB", rgb.size, (background,) * 3)
    canvas.paste(rgb, mask=alpha)
    return encode(image, "PNG"), canvas
