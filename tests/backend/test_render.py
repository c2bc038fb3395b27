"""PNG heatmaps: the paper's threshold, blur and overlay."""

import io

import numpy as np
import pytest
from PIL import Image

from backend.render import blur3x3, colorize, normalize_heatmap, overlay, png_bytes


def test_below_90th_percentile_is_zero_before_blur_and_top_is_one():
    heat = np.arange(100, dtype=np.float64).reshape(10, 10)
    low, high = np.percentile(heat, [90, 99])
    scaled = np.clip((heat - low) / (high - low), 0, 1)
    np.testing.assert_allclose(normalize_heatmap(heat), blur3x3(scaled))
    assert scaled[heat <= low].max() == 0 and scaled.max() == 1


def test_blur_is_a_normalized_3x3_gaussian():
    impulse = np.zeros((5, 5))
    impulse[2, 2] = 1.0
    blurred = blur3x3(impulse)
    np.testing.assert_allclose(blurred[1:4, 1:4], np.outer([1, 2, 1], [1, 2, 1]) / 16)
    assert blurred.sum() == pytest.approx(1.0)


def test_constant_map_is_blank_and_colours_are_ordered():
    assert not normalize_heatmap(np.ones((4, 4))).any()
    colours = colorize(np.array([0.0, 0.5, 1.0])).astype(int)
    assert colours.shape == (3, 3) and colours.sum(axis=1)[0] < colours.sum(axis=1)[1] < colours.sum(axis=1)[2]


def test_overlay_png_decodes_and_keeps_cold_pixels_grey():
    image = np.random.default_rng(0).random((1, 28, 28))
    heat = np.zeros((28, 28))
    heat[10:14, 10:14] = 1.0 + np.arange(16).reshape(4, 4)
    out = overlay(image, heat)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    corner = out[0, 0].astype(int)
    assert corner[0] == corner[1] == corner[2]  # untouched pixels stay greyscale
    decoded = Image.open(io.BytesIO(png_bytes(out, upscale_to=112)))
    assert decoded.format == "PNG" and decoded.size == (112, 112)
