"""``checkpoint:PATH:ARCH``: a local state dict (``torch.save`` file read with ``weights_only=True``, or
``.safetensors``) for ARCH = ``demo`` or a torchvision architecture name; the number of classes is read from
the state dict. Pickled code in a checkpoint is refused."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from backend.errors import PSSError

from ..checkpoints import load_state_dict_file, load_strict
from ..input_spec import InputSpec
from ..registry import ModelFamily, register, spec_forms
from . import demo, torchvision_zoo


def _meta_model(arch: str) -> nn.Module:
    """The architecture with its default head, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None)


def _classifier_size(arch: str, state: Mapping[str, torch.Tensor], path: Path) -> int:
    """Number of classes in ``state``: the output size of the architecture's last 1000-way head."""
    head_keys = [k for k, v in _meta_model(arch).state_dict().items() if v.dim() >= 1 and v.shape[0] == 1000]
    for key in reversed(head_keys):
        if key in state:
            return int(state[key].shape[0])
    raise PSSError(f"checkpoint {path} has none of {arch}'s classifier keys ({', '.join(head_keys)}); wrong ARCH?")


def _parse(rest: str, spec: str) -> dict:
    path, sep, arch = rest.rpartition(":")
    if not sep or not path or not arch:
        raise PSSError(f"bad model spec {spec!r}: need checkpoint:PATH:ARCH; {spec_forms()}")
    if arch != "demo":
        arch = torchvision_zoo.architecture(arch)
    return {"path": Path(path).expanduser(), "arch": arch}


def _load(fields: dict) -> nn.Module:
    path, arch = fields["path"], fields["arch"]
    state = load_state_dict_file(path)
    if arch == "demo":
        return demo.from_state(state, path)
    kwargs = {"num_classes": _classifier_size(arch, state, path)}
    if hasattr(_meta_model(arch), "aux_logits") and not any("aux" in k.lower() for k in state):
        kwargs.update(aux_logits=False, init_weights=False)  # inception_v3 / googlenet saved without aux heads
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    load_strict(model, state, path)
    return model


def _class_names(fields: dict) -> list[str]:
    state = load_state_dict_file(fields["path"])
    if fields["arch"] == "demo":
        count = state["fc.weight"].shape[0] if "fc.weight" in state else 10
    else:
        count = _classifier_size(fields["arch"], state, fields["path"])
    return [f"class {i}" for i in range(count)]


def _input_spec(fields: dict) -> InputSpec:
    return demo.INPUT if fields["arch"] == "demo" else torchvision_zoo.default_input(fields["arch"])


FAMILY = register(ModelFamily(
    prefix="checkpoint",
    forms="'checkpoint:PATH:ARCH' (ARCH = demo or a torchvision name, e.g. checkpoint:model.pt:resnet18)",
    parse=_parse,
    load=_load,
    class_names=_class_names,
    input_spec=_input_spec,
))
