"""Model families behind one registry: a spec ``PREFIX:REST`` is handled by the family registered for PREFIX.

A family is one module in ``backend/models/families/`` that calls ``register(ModelFamily(...))``; its
import in ``families/__init__.py`` is the registration line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from backend.errors import PSSError

from .input_spec import InputSpec


@dataclass(frozen=True)
class ModelFamily:
    prefix: str  # the spec up to the first ':' ('demo', 'torchvision', 'checkpoint', ...)
    forms: str  # the spec forms, quoted, for help and error messages
    parse: Callable[[str, str], dict]  # (the spec after 'PREFIX:', the whole spec) -> fields; PSSError if bad
    load: Callable[[dict], nn.Module]  # fields -> the model on the CPU
    class_names: Callable[[dict], list[str]]
    # fields -> what the model expects; None: the family does not know, so the loaded model's own
    # ``pretrained_cfg`` says (or ImageNet defaults apply; see ``backend.models.resolve_input_spec``)
    input_spec: Callable[[dict], InputSpec] | None


FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    if family.prefix in FAMILIES:
        raise ValueError(f"model family {family.prefix!r} is registered twice")
    FAMILIES[family.prefix] = family
    return family


def spec_forms() -> str:
    return "valid model specs: " + ", ".join(family.forms for family in FAMILIES.values())


def parse_model_spec(spec: str) -> tuple[str, dict]:
    """``(family prefix, fields)`` for a spec string."""
    if not isinstance(spec, str) or not spec.strip():
        raise PSSError(f"empty model spec; {spec_forms()}")
    spec = spec.strip()
    prefix, _, rest = spec.partition(":")
    family = FAMILIES.get(prefix)
    if family is None:
        raise PSSError(f"unknown model spec {spec!r}; {spec_forms()}")
    return prefix, family.parse(rest, spec)
