"""``python:MODULE:CALLABLE`` (your own code: ``CALLABLE()`` returns the ``nn.Module``, weights included) and
``python:MODULE:CALLABLE:CHECKPOINT`` (a state dict file loaded into it afterwards: ``torch.save`` read with
``weights_only=True``, or ``.safetensors``). MODULE is imported by its dotted name from the current directory
or ``PYTHONPATH``; CALLABLE may be a dotted attribute path (``Net.build``). What the model expects as input is
its ``pretrained_cfg`` attribute when it has one (timm's convention), else ImageNet defaults."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from torch import nn

from backend.errors import PSSError

from ..checkpoints import load_state_dict_file, load_strict
from ..registry import ModelFamily, register, spec_forms


def _parse(rest: str, spec: str) -> dict:
    module, _, rest = rest.partition(":")
    attribute, _, checkpoint = rest.partition(":")
    if not module or not attribute:
        raise PSSError(f"bad model spec {spec!r}: need python:MODULE:CALLABLE[:CHECKPOINT]; {spec_forms()}")
    return {"spec": spec, "module": module, "callable": attribute,
            "checkpoint": Path(checkpoint).expanduser() if checkpoint else None}


def _import(name: str):
    """The module ``name``, with the current directory searched first (``pss`` run as a console script does not
    put it on ``sys.path`` by itself)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PSSError(f"no Python module {name!r} in the current directory ({cwd}) or on PYTHONPATH") from exc
        raise PSSError(f"importing module {name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything while it is imported
        raise PSSError(f"importing module {name!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(cwd)


def _load(fields: dict) -> nn.Module:
    name, attribute = fields["module"], fields["callable"]
    target = _import(name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise PSSError(f"module {name!r} has no {attribute!r} (spec {fields['spec']!r})")
        target = getattr(target, part)
    if not callable(target):
        raise PSSError(f"{name}:{attribute} is a {type(target).__name__}, not a callable that returns a model")
    try:
        model = target()
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise PSSError(f"calling {name}:{attribute}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise PSSError(f"{name}:{attribute}() returned a {type(model).__name__}, not a torch nn.Module")
    if fields["checkpoint"] is not None:
        load_strict(model, load_state_dict_file(fields["checkpoint"]), fields["checkpoint"])
    return model


def output_count(model: nn.Module, spec: str) -> int:
    """The number of classes: the model's ``num_classes`` attribute, else the size of its last ``nn.Linear``."""
    count = getattr(model, "num_classes", None)
    if isinstance(count, int) and count > 0:
        return count
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PSSError(f"cannot tell how many classes {spec!r} has (no num_classes attribute, no nn.Linear); "
                       "the dataset's classes are used")
    return linears[-1].out_features


FAMILY = register(ModelFamily(
    prefix="python",
    forms="'python:MODULE:CALLABLE[:CHECKPOINT]' (your own code, e.g. python:mynet:build)",
    parse=_parse,
    load=_load,
    class_names=lambda fields: [f"class {i}" for i in range(output_count(_load(fields), fields["spec"]))],
    input_spec=None,
))
