"""The image pipeline of a model: PIL image -> what is displayed -> normalized model input.

A model family only says what its model expects (``backend.models.InputSpec``); this module turns that into
the steps, so datasets, uploads and the dashboard's display all go through the same ones.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from torch import nn

from backend.models import InputSpec, model_input_spec


class Preprocess:
    """PIL image -> model input: ``geometry`` (mode, resize, crop; what is displayed) then ``to_tensor``,
    following a model's ``InputSpec``."""

    def __init__(self, spec: InputSpec):
        self.spec = spec
        self.mode, self.resize, self.crop = spec.mode, spec.resize, spec.crop
        self.mean, self.std = tuple(spec.mean), tuple(spec.std)
        self.interpolation, self.pad_square, self.background = spec.interpolation, spec.pad_square, spec.background

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def geometry(self, image: Image.Image) -> Image.Image:
        """Colour mode, (padding,) resize and centre crop: the image as the model sees it, before normalization."""
        image = image.convert(self.mode) if image.mode != self.mode else image
        if self.pad_square and image.width != image.height:
            side = max(image.size)
            fill = self.background if self.mode == "L" else (self.background,) * 3
            square = Image.new(self.mode, (side, side), fill)
            square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = square
        if self.resize is not None:
            image = _resize(image, self.resize, self.interpolation)
        if self.crop is not None:
            image = _center_crop(image, self.crop)
        return image

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``[C, H, W]`` (or ``[N, C, H, W]``) -> normalized float32."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32).view(shape)
        return (pixels.to(torch.float32) / 255.0 - mean) / std

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """A geometry-processed PIL image -> normalized float32 ``[C, H, W]``."""
        array = np.array(image, dtype=np.uint8)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return self.normalize(torch.from_numpy(np.ascontiguousarray(array)))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.geometry(image))

    def __repr__(self) -> str:
        return (f"Preprocess(mode={self.mode!r}, resize={self.resize}, crop={self.crop}, mean={self.mean}, "
                f"std={self.std}, pad_square={self.pad_square})")


def _resize(image: Image.Image, size, interpolation) -> Image.Image:
    """torchvision's resize rule: an int resizes the shorter side (aspect kept), a pair is (height, width)."""
    return TF.resize(image, list(size) if isinstance(size, tuple) else [size], interpolation=interpolation)


def _center_crop(image: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    return TF.center_crop(image, list(size) if isinstance(size, tuple) else [size])


def model_input_transform(spec: str, model: nn.Module | None = None) -> Preprocess:
    """PIL image -> model input tensor, for the model named by ``spec`` (see ``model_input_spec``)."""
    return Preprocess(model_input_spec(spec, model))
