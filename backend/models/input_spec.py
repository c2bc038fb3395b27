"""What a model expects as input, as plain data: the image pipeline itself lives in ``backend.data``."""

from __future__ import annotations

from dataclasses import dataclass

from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """Colour mode, resize, centre crop and normalization of a model's input.

    ``resize`` is an int (shorter side, aspect kept) or a ``(height, width)`` pair; ``pad_square`` pads a
    non-square image to a square first; ``background`` is the grey level that padding and transparent
    pixels of uploads become (black for the demo's light-on-black Fashion-MNIST, white for photographs).
    """

    mode: str
    resize: int | tuple[int, int] | None
    crop: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    pad_square: bool = False
    background: int = 0

    @classmethod
    def from_torchvision(cls, preset) -> "InputSpec":
        """The same steps as a torchvision ``ImageClassification`` preset (a weights' ``transforms()``)."""
        resize = preset.resize_size[0] if len(preset.resize_size) == 1 else tuple(preset.resize_size)
        return cls("RGB", resize, preset.crop_size[0], tuple(preset.mean), tuple(preset.std),
                   interpolation=preset.interpolation, background=255)
