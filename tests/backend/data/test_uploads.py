"""Uploads: EXIF orientation, odd colour modes, and exactly the dataset's preprocessing afterwards."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from backend.data import open_image, preprocess_upload, to_standard_mode
from backend.errors import PSSError
from backend.data import model_input_transform
from backend.models.demo import FASHION_MNIST_MEAN, FASHION_MNIST_STD

RESNET = "torchvision:resnet18"


def _reopen(image: Image.Image, fmt: str = "PNG", **save_args) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    buffer.seek(0)
    return Image.open(buffer)


def _demo_tensor(display: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(display).float() / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD)[None]


def test_exif_rotated_upload_comes_out_upright():
    upright = np.zeros((28, 28), dtype=np.uint8)
    upright[2:8, 2:20] = 255  # a bar near the top-left
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    upload = _reopen(stored, exif=exif.tobytes())
    assert not np.array_equal(np.asarray(upload), upright)
    x, display = preprocess_upload(upload, "demo")
    assert np.array_equal(display, upright)
    assert torch.allclose(x, _demo_tensor(upright), atol=1e-6)


def test_demo_upload_of_a_fashion_mnist_sized_image_is_the_dataset_normalization():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    x, display = preprocess_upload(Image.fromarray(pixels), "demo")
    assert np.array_equal(display, pixels)
    assert x.shape == (1, 28, 28) and torch.allclose(x, _demo_tensor(pixels), atol=1e-6)


def test_non_square_demo_upload_is_padded_with_black_not_inverted():
    white = Image.new("L", (56, 28), 255)
    _, display = preprocess_upload(white, "demo")
    assert display.shape == (28, 28)
    assert display[:6].max() == 0 and display[-6:].max() == 0  # padding above and below: black background
    assert display[10:18].min() == 255  # the object itself stays white


def test_cmyk_upload():
    cyan = Image.new("CMYK", (40, 30), (255, 0, 0, 0))
    _, rgb = preprocess_upload(cyan, RESNET)
    assert rgb.shape == (224, 224, 3) and (rgb == [0, 255, 255]).all()
    _, grey = preprocess_upload(cyan, "demo")  # 40x30: padded to 40x40 with black, then 28x28
    assert (grey[6:22] == np.asarray(Image.new("RGB", (1, 1), (0, 255, 255)).convert("L"))[0, 0]).all()
    assert grey[:3].max() == 0 and grey[-3:].max() == 0


def test_rgba_and_la_transparency_goes_onto_the_models_background():
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[:, :14] = [200, 100, 50, 255]  # opaque left half
    rgba[:, 14:] = [255, 255, 255, 0]  # transparent right half (its colour must not leak)
    image = Image.fromarray(rgba, mode="RGBA")
    _, grey = preprocess_upload(image, "demo")
    assert grey[:, 20:].max() == 0, "demo background is black, like Fashion-MNIST"
    expected_left = np.asarray(Image.new("RGB", (1, 1), (200, 100, 50)).convert("L"))[0, 0]
    assert (grey[:, :10] == expected_left).all()
    standard = to_standard_mode(image, background=255)
    assert standard.mode == "RGB"
    assert (np.asarray(standard)[:, 20:] == 255).all() and (np.asarray(standard)[:, :10] == [200, 100, 50]).all()

    la = Image.fromarray(np.dstack([np.full((28, 28), 90, np.uint8), rgba[..., 3]]), mode="LA")
    _, grey = preprocess_upload(la, "demo")
    assert (grey[:, :10] == 90).all() and grey[:, 20:].max() == 0


def test_sixteen_bit_upload_is_scaled_not_clipped():
    levels = np.array([[0, 32896, 65535]], dtype=np.uint16).repeat(28, axis=0).repeat(10, axis=1)[:, :28]
    image = Image.fromarray(levels)
    assert image.mode.startswith("I;16")
    for upload in (image, _reopen(image)):  # in memory, and after a 16-bit PNG round trip
        _, display = preprocess_upload(upload, "demo")
        assert display.shape == (28, 28)
        assert display[0, 0] == 0 and display[0, 15] == 128 and display[0, 25] == 255


def test_palette_uploads_with_and_without_transparency():
    palette_image = Image.new("P", (30, 30), 1)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    _, rgb = preprocess_upload(_reopen(palette_image), RESNET)
    assert (rgb == [255, 0, 0]).all()

    palette_image.paste(2, (0, 0, 15, 30))
    palette_image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    transparent = _reopen(palette_image, transparency=2)  # green is the transparent index
    standard = np.asarray(to_standard_mode(transparent, background=255))
    assert (standard[:, :15] == 255).all() and (standard[:, 15:] == [255, 0, 0]).all()


def test_upload_tensor_equals_the_models_transform_of_the_upright_image():
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    x, display = preprocess_upload(photo, RESNET)
    assert torch.equal(x, model_input_transform(RESNET)(photo))
    assert np.array_equal(display, np.asarray(model_input_transform(RESNET).geometry(photo)))


def test_unreadable_upload_file(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG but not really")
    with pytest.raises(PSSError, match="cannot read image"):
        open_image(path)
