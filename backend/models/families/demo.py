"""``demo``: the committed demo ResNet for Fashion-MNIST (``backend/models/weights/demo_resnet.pt``,
written by ``pss train-demo``)."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.errors import PSSError

from ..checkpoints import load_state_dict_file, load_strict
from ..demo import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, DemoResNet
from ..input_spec import InputSpec
from ..registry import ModelFamily, register

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEMO_CHECKPOINT = WEIGHTS_DIR / "demo_resnet.pt"
# grayscale 28x28; non-square uploads are padded to a square with black first, the way Fashion-MNIST itself
# fitted the longer side
INPUT = InputSpec("L", (28, 28), None, (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,), pad_square=True)


def from_state(state: dict[str, torch.Tensor], path: Path) -> DemoResNet:
    """A demo ResNet shaped after ``state`` (its widths and classes), with ``state`` loaded."""
    try:
        model = DemoResNet.from_state_dict(state)
    except ValueError as exc:
        raise PSSError(f"checkpoint {path}: {exc}") from exc
    load_strict(model, state, path)
    return model


def _parse(rest: str, spec: str) -> dict:
    if rest:
        raise PSSError(f"bad model spec {spec!r}: 'demo' takes no arguments")
    return {}


def _load(_fields: dict) -> DemoResNet:
    if not DEMO_CHECKPOINT.is_file():
        raise PSSError(f"the demo checkpoint {DEMO_CHECKPOINT} is missing; run `pss train-demo` to create it")
    return from_state(load_state_dict_file(DEMO_CHECKPOINT), DEMO_CHECKPOINT)


FAMILY = register(ModelFamily(
    prefix="demo",
    forms="'demo'",
    parse=_parse,
    load=_load,
    class_names=lambda _fields: list(FASHION_MNIST_CLASSES),
    input_spec=lambda _fields: INPUT,
))
