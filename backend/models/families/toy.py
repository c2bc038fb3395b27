"""``toy:CLASSES``: a tiny random CNN for 28x28 grayscale images (seeded), to try the spec machinery."""

from __future__ import annotations

import torch
from torch import nn

from backend.errors import PSSError

from ..demo import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from ..input_spec import InputSpec
from ..registry import ModelFamily, register


def _parse(rest: str, spec: str) -> dict:
    if not rest.isdigit() or int(rest) < 2:
        raise PSSError(f"bad model spec {spec!r}: need toy:CLASSES with CLASSES >= 2")
    return {"classes": int(rest)}


def _load(fields: dict) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, fields["classes"]))


FAMILY = register(ModelFamily(
    prefix="toy",
    forms="'toy:CLASSES' (a tiny random CNN)",
    parse=_parse,
    load=_load,
    class_names=lambda fields: [f"class {i}" for i in range(fields["classes"])],
    input_spec=lambda _fields: InputSpec("L", (28, 28), None, (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,)),
))
