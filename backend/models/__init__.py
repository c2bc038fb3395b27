"""Model specs: which network to explain, its class names and what input it expects.

A spec is ``PREFIX[:REST]``; each prefix is a model family, one module in ``families/`` behind the registry
in ``registry.py`` (``demo``, ``torchvision:NAME[:WEIGHTS]``, ``checkpoint:PATH:ARCH``, ``timm:NAME[:FILE]``,
``python:MODULE:CALLABLE[:CHECKPOINT]``; see each module). What a model expects as input is an ``InputSpec``
(plain data); ``backend.data`` turns it into the image pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from . import families
from .checkpoints import load_state_dict_file, weights_sha256
from .device import resolve_device
from .families.demo import DEMO_CHECKPOINT
from .input_spec import IMAGENET_DEFAULT, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, InputSpec
from .registry import FAMILIES, ModelFamily, parse_model_spec, register

__all__ = [
    "DEMO_CHECKPOINT",
    "FAMILIES",
    "IMAGENET_DEFAULT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
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


def model_input_spec(spec: str, model: nn.Module | None = None) -> InputSpec:
    """What the model named by ``spec`` expects: what its family knows (the demo's steps, torchvision weights'
    transforms), else the model's own ``pretrained_cfg`` (timm's convention), else ``IMAGENET_DEFAULT``.

    ``model`` is the loaded model, where the caller has it; without it, families that do not know are loaded
    to ask the model.
    """
    prefix, fields = parse_model_spec(spec)
    family = FAMILIES[prefix]
    if family.input_spec is not None:
        return family.input_spec(fields)
    cfg = getattr(model if model is not None else family.load(fields), "pretrained_cfg", None)
    return InputSpec.from_pretrained_cfg(cfg) if isinstance(cfg, Mapping) and cfg else IMAGENET_DEFAULT
