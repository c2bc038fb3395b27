"""Turning an uploaded file into a decoded image, or a clear 413/415/422 reason.

The pixel count is read from the header before anything is decoded (decompression bombs) and animated
images give their first frame. Mode conversion (CMYK, RGBA, palette, 16-bit, EXIF orientation) is left to
``backend.data.preprocess_upload`` so that uploads are prepared exactly like the dataset.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}


class UploadRejected(Exception):
    """The upload cannot be used; ``status`` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """The upload's first frame, fully decoded (any mode; see ``preprocess_upload`` for the conversion)."""
    if not data:
        raise UploadRejected(422, "the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except UnidentifiedImageError:
        raise UploadRejected(415, f"not an image in a supported format ({', '.join(ACCEPTED_FORMATS.values())})")
    except Image.DecompressionBombError as exc:
        raise UploadRejected(413, f"the image has too many pixels: {describe_error(exc)}")
    except Exception as exc:  # Pillow raises many kinds (OSError, ValueError, struct.error, ...) on bad files
        raise UploadRejected(422, f"the image header cannot be read: {describe_error(exc)}")
    width, height = image.size
    if width < 1 or height < 1:
        raise UploadRejected(422, f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise UploadRejected(
            413, f"the image has {width}x{height} = {width * height} pixels; at most {max_pixels} are accepted"
        )
    try:
        image.seek(0)
        image.load()
        return image
    except Exception as exc:  # as above
        raise UploadRejected(422, f"the image cannot be decoded (truncated or corrupt?): {describe_error(exc)}")


def describe_error(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for a response."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
