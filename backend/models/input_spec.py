"""What a model expects as input, as plain data: the image pipeline itself lives in ``backend.data``.

Where it comes from, in order (``resolve_input_spec`` in ``backend.models``): explicit settings
(``with_overrides``: ``pss precompute --input-size/--resize/--mean/--std/--interpolation``), else what the model
family knows (the demo's Fashion-MNIST steps, torchvision weights' transforms), else the model's own
``pretrained_cfg`` (timm's convention, ``from_pretrained_cfg``), else ``IMAGENET_DEFAULT``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torchvision.transforms import InterpolationMode

from backend.errors import PSSError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875  # 224 / 256, the classic ImageNet evaluation resize
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")

# Where an InputSpec came from, recorded in the manifest (``source`` never takes part in comparisons).
FROM_FAMILY, FROM_PRETRAINED_CFG, FROM_IMAGENET_DEFAULT, FROM_FLAGS = "model", "pretrained_cfg", "imagenet-default", "flags"


@dataclass(frozen=True)
class InputSpec:
    """Colour mode, resize, centre crop and normalization of a model's input.

    ``resize`` is an int (shorter side, aspect kept) or a ``(height, width)`` pair; ``crop`` an int (square) or a
    ``(height, width)`` pair; ``pad_square`` pads a non-square image to a square first; ``background`` is the grey
    level that padding and transparent pixels of uploads become (black for the demo's light-on-black
    Fashion-MNIST, white for photographs).
    """

    mode: str
    resize: int | tuple[int, int] | None
    crop: int | tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    pad_square: bool = False
    background: int = 0
    source: str = dataclasses.field(default=FROM_FAMILY, compare=False)

    @classmethod
    def from_torchvision(cls, preset) -> "InputSpec":
        """The same steps as a torchvision ``ImageClassification`` preset (a weights' ``transforms()``)."""
        resize = preset.resize_size[0] if len(preset.resize_size) == 1 else tuple(preset.resize_size)
        return cls("RGB", resize, preset.crop_size[0], tuple(preset.mean), tuple(preset.std),
                   interpolation=preset.interpolation, background=255)

    @classmethod
    def from_pretrained_cfg(cls, cfg: Mapping) -> "InputSpec":
        """timm's evaluation transform for a ``pretrained_cfg``: resize to ``floor(size / crop_pct)``, centre crop
        ``input_size``, ``mean``/``std``, ``interpolation``; keys it lacks take the ImageNet defaults."""
        channels, height, width = tuple(cfg.get("input_size") or (3, 224, 224))
        crop_pct = float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)
        if cfg.get("crop_mode", "center") == "squash":  # both sides resized to the scaled size, then cropped
            resize = (math.floor(height / crop_pct), math.floor(width / crop_pct))
        else:
            resize = math.floor(min(height, width) / crop_pct)
        mode = "L" if int(channels) == 1 else "RGB"
        fallback_mean, fallback_std = (IMAGENET_MEAN, IMAGENET_STD) if mode == "RGB" else ((0.5,), (0.5,))
        return cls(mode, resize, height if height == width else (height, width),
                   tuple(float(v) for v in cfg.get("mean") or fallback_mean),
                   tuple(float(v) for v in cfg.get("std") or fallback_std),
                   interpolation=interpolation(cfg.get("interpolation") or "bilinear"),
                   background=255 if mode == "RGB" else 0, source=FROM_PRETRAINED_CFG)

    def with_overrides(self, *, input_size: int | None = None, resize: int | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       interpolation_name: str | None = None) -> "InputSpec":
        """This spec with explicit settings applied. ``input_size`` alone keeps the crop/resize ratio (224 of
        256 stays 0.875); one ``mean``/``std`` value means a grayscale input, three an RGB one."""
        if all(value is None for value in (input_size, resize, mean, std, interpolation_name)):
            return self
        changes: dict = {"source": FROM_FLAGS}
        for flag, value in (("--input-size", input_size), ("--resize", resize)):
            if value is not None and value < 1:
                raise PSSError(f"{flag} must be a positive number of pixels, got {value}")
        if input_size is not None:
            changes["crop"] = input_size
            if resize is None:
                changes["resize"] = math.floor(input_size / self._crop_pct())
        if resize is not None:
            changes["resize"] = resize
        channels = len(mean) if mean is not None else len(std) if std is not None else len(self.mean)
        if channels not in (1, 3):
            raise PSSError(f"--mean and --std take 1 (grayscale) or 3 (RGB) values, got {channels}")
        for flag, values in (("--mean", mean), ("--std", std)):
            if values is not None and len(values) != channels:
                raise PSSError(f"--mean and --std need the same number of values (1 or 3); {flag} has {len(values)}")
        if std is not None and min(std) <= 0:
            raise PSSError(f"--std values must be positive, got {list(std)}")
        if channels != len(self.mean) and (mean is None or std is None):
            raise PSSError(f"the model's preprocessing has {len(self.mean)} channel(s); give both --mean and --std "
                           f"with {channels} values to change that")
        if mean is not None:
            changes["mean"] = tuple(float(v) for v in mean)
        if std is not None:
            changes["std"] = tuple(float(v) for v in std)
        if channels != len(self.mean):
            changes.update(mode="L" if channels == 1 else "RGB", background=0 if channels == 1 else 255)
        if interpolation_name is not None:
            changes["interpolation"] = interpolation(interpolation_name)
        return dataclasses.replace(self, **changes)

    def _crop_pct(self) -> float:
        crop = self.crop if isinstance(self.crop, int) else min(self.crop) if self.crop else None
        side = self.resize if isinstance(self.resize, int) else min(self.resize) if self.resize else None
        return crop / side if crop and side else DEFAULT_CROP_PCT

    def describe(self) -> str:
        """One line for logs and messages: ``RGB, resize 256, centre crop 224, bilinear, mean (...), std (...)``."""
        parts = [self.mode]
        if self.pad_square:
            parts.append("padded to a square")
        if self.resize is not None:
            parts.append(f"resize {_size_text(self.resize)}")
        if self.crop is not None:
            parts.append(f"centre crop {_size_text(self.crop)}")
        parts += [self.interpolation.value, f"mean {_numbers(self.mean)}", f"std {_numbers(self.std)}"]
        return ", ".join(parts)

    def to_dict(self) -> dict:
        """JSON form, as the manifest records it."""
        return {"mode": self.mode, "resize": _size_json(self.resize), "crop": _size_json(self.crop),
                "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation.value,
                "pad_square": self.pad_square, "background": self.background, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping) -> "InputSpec":
        return cls(str(data["mode"]), _size_from_json(data["resize"]), _size_from_json(data["crop"]),
                   tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]),
                   interpolation=interpolation(data["interpolation"]), pad_square=bool(data["pad_square"]),
                   background=int(data["background"]), source=str(data.get("source", FROM_FAMILY)))


IMAGENET_DEFAULT = InputSpec("RGB", 256, 224, IMAGENET_MEAN, IMAGENET_STD, background=255,
                             source=FROM_IMAGENET_DEFAULT)


def interpolation(name: str) -> InterpolationMode:
    """``bicubic`` -> ``InterpolationMode.BICUBIC``; a one-line error for other names."""
    if str(name).lower() not in INTERPOLATIONS:
        raise PSSError(f"unknown interpolation {name!r}; choose one of {', '.join(INTERPOLATIONS)}")
    return InterpolationMode(str(name).lower())


def _size_text(size) -> str:
    return str(size) if isinstance(size, int) else f"{size[0]}x{size[1]}"


def _numbers(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _size_json(size):
    return list(size) if isinstance(size, tuple) else size


def _size_from_json(size):
    return tuple(int(v) for v in size) if isinstance(size, list) else (None if size is None else int(size))
