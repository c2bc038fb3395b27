"""``torchvision:NAME`` (random weights, seeded: the same spec always gives the same model; nothing is
downloaded) and ``torchvision:NAME:WEIGHTS`` (pretrained weights through torchvision's weights API, e.g.
``IMAGENET1K_V2``, ``ResNet50_Weights.IMAGENET1K_V2`` or ``DEFAULT``; downloaded into torchvision's cache
the first time)."""

from __future__ import annotations

import dataclasses
import difflib

import torch
import torchvision
from torch import nn

from backend.errors import PSSError

from ..input_spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from ..registry import ModelFamily, register, spec_forms

RANDOM_INIT_SEED = 0


def architecture(name: str) -> str:
    """``name`` if it is a torchvision classification architecture, else a one-line error with suggestions."""
    names = sorted(torchvision.models.list_models(module=torchvision.models))
    if name in names:
        return name
    close = difflib.get_close_matches(name.lower(), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise PSSError(f"unknown torchvision classification model {name!r}{hint}; {len(names)} are available, e.g. resnet50")


def _weights(name: str, weights: str):
    """The weights enum member named ``weights`` (``IMAGENET1K_V2``, ``ResNet50_Weights.IMAGENET1K_V2``, ``DEFAULT``)."""
    enum = torchvision.models.get_model_weights(name)
    member = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
    if member == "DEFAULT":
        return enum.DEFAULT
    if member in enum.__members__:
        return enum[member]
    valid = ", ".join(["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")])
    raise PSSError(f"unknown weights {weights!r} for torchvision model {name!r}; valid: {valid}")


def default_input(name: str) -> InputSpec:
    """The architecture's default weights' resize/crop sizes with ImageNet mean/std (no download)."""
    preset = InputSpec.from_torchvision(torchvision.models.get_model_weights(name).DEFAULT.transforms())
    return dataclasses.replace(preset, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _parse(rest: str, spec: str) -> dict:
    parts = rest.split(":")
    if len(parts) not in (1, 2) or not all(parts):
        raise PSSError(f"bad model spec {spec!r}; {spec_forms()}")
    name = architecture(parts[0])
    return {"name": name, "weights": _weights(name, parts[1]) if len(parts) == 2 else None}


def _load(fields: dict) -> nn.Module:
    name, weights = fields["name"], fields["weights"]
    if weights is not None:
        try:
            return torchvision.models.get_model(name, weights=weights)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise PSSError(f"could not load {weights} for {name}: {exc}") from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return torchvision.models.get_model(name, weights=None)


def _class_names(fields: dict) -> list[str]:
    if fields["weights"] is not None:
        return list(fields["weights"].meta["categories"])
    return [f"class {i}" for i in range(1000)]


def _input_spec(fields: dict) -> InputSpec:
    if fields["weights"] is not None:
        return InputSpec.from_torchvision(fields["weights"].transforms())
    return default_input(fields["name"])


FAMILY = register(ModelFamily(
    prefix="torchvision",
    forms="'torchvision:NAME' (random init, e.g. torchvision:resnet50), "
          "'torchvision:NAME:WEIGHTS' (e.g. torchvision:resnet50:IMAGENET1K_V2)",
    parse=_parse,
    load=_load,
    class_names=_class_names,
    input_spec=_input_spec,
))
