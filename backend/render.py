"""Images and saliency heatmaps as PNG bytes (numpy + Pillow only, no torch)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Anchors of a perceptually ordered dark-blue -> red -> yellow map (sampled from "inferno"-like colours).
_COLORMAP_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
_BLUR_3X3 = np.outer([1, 2, 1], [1, 2, 1]) / 16.0  # the 3x3 Gaussian kernel (sigma ~0.85)


def normalize_heatmap(heat: np.ndarray, low_percentile: float = 90.0, high_percentile: float = 99.0) -> np.ndarray:
    """The paper's display processing: keep values above the ``low`` percentile, clip at the ``high`` one,
    scale to [0, 1], then a 3x3 Gaussian blur. A constant map becomes all zeros."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    if heat.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got shape {heat.shape}")
    low, high = np.percentile(heat, [low_percentile, high_percentile])
    if high <= low:
        high = heat.max()
    if high <= low:
        return np.zeros_like(heat)
    scaled = np.clip((heat - low) / (high - low), 0.0, 1.0)
    return blur3x3(scaled)


def blur3x3(values: np.ndarray) -> np.ndarray:
    """3x3 Gaussian blur with edge replication (same size out)."""
    padded = np.pad(values, 1, mode="edge")
    h, w = values.shape
    out = np.zeros_like(values, dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            out += _BLUR_3X3[dy, dx] * padded[dy : dy + h, dx : dx + w]
    return out


def colorize(values01: np.ndarray) -> np.ndarray:
    """``[H, W]`` in [0, 1] -> ``[H, W, 3]`` uint8 colours."""
    positions = np.clip(values01, 0.0, 1.0) * (len(_COLORMAP_ANCHORS) - 1)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, len(_COLORMAP_ANCHORS) - 1)
    frac = (positions - lower)[..., None]
    rgb = _COLORMAP_ANCHORS[lower] * (1 - frac) + _COLORMAP_ANCHORS[upper] * frac
    return np.round(rgb).astype(np.uint8)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An image as ``[H, W, 3]`` uint8: accepts ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]`` (C in 1, 3),
    uint8 or float in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[2] not in (1, 3):
        image = np.transpose(image, (1, 2, 0))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"cannot interpret an array of shape {image.shape} as an image")
    if image.dtype != np.uint8:
        image = np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    return image


def overlay(image: np.ndarray, heat: np.ndarray, max_alpha: float = 0.85) -> np.ndarray:
    """Heatmap coloured and alpha-blended over a greyscale copy of the image, ``[H, W, 3]`` uint8.

    The heatmap is resized to the image if needed; its weak (sub-90th-percentile) part leaves the image visible.
    """
    rgb = to_rgb_uint8(image)
    values = normalize_heatmap(heat)
    if values.shape != rgb.shape[:2]:
        resized = Image.fromarray(values.astype(np.float32), mode="F").resize(
            (rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR
        )
        values = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)
    grey = rgb.astype(np.float64).mean(axis=2, keepdims=True) * 0.8
    alpha = (values * max_alpha)[..., None]
    blended = grey * (1 - alpha) + colorize(values).astype(np.float64) * alpha
    return np.round(blended).astype(np.uint8)


def png_bytes(image: np.ndarray, upscale_to: int | None = None) -> bytes:
    """PNG encoding of an image array; small images are enlarged (nearest) to ``upscale_to`` px for display."""
    pil = Image.fromarray(to_rgb_uint8(image))
    if upscale_to and max(pil.size) < upscale_to:
        factor = max(1, upscale_to // max(pil.size))
        pil = pil.resize((pil.width * factor, pil.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()
