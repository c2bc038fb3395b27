"""Model specs: which network to explain, its class names and what input it expects.

A spec is ``PREFIX[:REST]``; each prefix is a model family, one module in ``families/`` behind the registry
in ``registry.py`` (``demo``, ``torchvision:NAME[:WEIGHTS]``, ``checkpoint:PATH:ARCH``; see each module).
What a model expects as input is an ``InputSpec`` (plain data); ``backend.data`` turns it into the image
pipeline.
"""

from __future__ import annotations

import torch
from torch import nn

from . import families
from .checkpoints import load_state_dict_file, weights_sha256
from .device import resolve_device
from .families.demo import DEMO_CHECKPOINT
from .input_spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from .registry import FAMILIES, ModelFamily, parse_model_spec, register

__all__ = [
    "DEMO_CHECKPOINT",
    "FAMILIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputSpec",
    "ModelFamily",
    "families",
    "load_model",
    "load_state_dict_file",
    "model_class_names",
    "model_input_spec",
    "parse_model_spec",
    "register",
    "resolve_device",
    "weights_sha256",
]


def load_model(spec: str, device: str | torch.device = "cpu") -> nn.Module:
    """The model named by ``spec`` on ``device``, in eval mode."""
    prefix, fields = parse_model_spec(spec)
    return FAMILIES[prefix].load(fields).to(device).eval()


def model_class_names(spec: str) -> list[str]:
    """Fashion-MNIST names for the demo, the weights' categories for torchvision weights, else ``class i``."""
    prefix, fields = parse_model_spec(spec)
    return FAMILIES[prefix].class_names(fields)


def model_input_spec(spec: str) -> InputSpec:
    """What the model named by ``spec`` expects: its weights' own transforms where it has them."""
    prefix, fields = parse_model_spec(spec)
    return FAMILIES[prefix].input_spec(fields)
