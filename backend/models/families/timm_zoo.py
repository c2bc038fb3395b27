"""``timm:NAME`` (random init, seeded: the same spec always gives the same model) and ``timm:NAME:FILE`` (weights
from a local state dict file, ``torch.save`` read with ``weights_only=True`` or ``.safetensors``; the number of
classes is read from the file). Nothing is downloaded: models are always created with ``pretrained=False``.
timm is an optional extra (``pip install -e '.[timm]'``). What the model expects as input is its
``pretrained_cfg`` (input size, crop_pct, interpolation, mean, std); NAME may carry a pretrained tag
(``timm:resnet50.a1_in1k:FILE``) so that it is the tag's."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from backend.errors import PSSError

from ..checkpoints import load_state_dict_file, load_strict
from ..registry import ModelFamily, register, spec_forms

RANDOM_INIT_SEED = 0


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise PSSError("timm: model specs need the optional package timm; install it with "
                       "pip install -e '.[timm]' (or pip install timm)") from exc
    return timm


def _parse(rest: str, spec: str) -> dict:
    name, _, path = rest.partition(":")
    if not name:
        raise PSSError(f"bad model spec {spec!r}: need timm:NAME[:FILE]; {spec_forms()}")
    timm = _timm()
    if not timm.is_model(name.partition(".")[0]):  # NAME may carry a pretrained tag: resnet50.a1_in1k
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise PSSError(f"unknown timm model {name!r}{hint}; `python -c \"import timm; print(timm.list_models())\"` "
                       "lists them")
    return {"name": name, "path": Path(path).expanduser() if path else None}


def _create(name: str, **kwargs) -> nn.Module:
    try:
        return _timm().create_model(name, pretrained=False, **kwargs)
    except RuntimeError as exc:  # an unknown pretrained tag, or an argument the architecture refuses
        raise PSSError(f"timm could not create {name!r}: {exc}") from exc


def _num_classes(name: str, state: dict[str, torch.Tensor], path: Path) -> int:
    """Rows of the classifier weight named by the architecture's ``pretrained_cfg['classifier']``."""
    with torch.device("meta"):
        classifier = _create(name).pretrained_cfg.get("classifier")
    heads = [classifier] if isinstance(classifier, str) else list(classifier or ())
    for head in heads:
        if f"{head}.weight" in state:
            return int(state[f"{head}.weight"].shape[0])
    raise PSSError(f"checkpoint {path} has no classifier weight of {name} ({', '.join(heads) or 'none named'}); "
                   "wrong NAME?")


def _load(fields: dict) -> nn.Module:
    name, path = fields["name"], fields["path"]
    if path is not None:
        state = load_state_dict_file(path)
        model = _create(name, num_classes=_num_classes(name, state, path))
        load_strict(model, state, path)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return _create(name)


FAMILY = register(ModelFamily(
    prefix="timm",
    forms="'timm:NAME' (random init, e.g. timm:resnet50), 'timm:NAME:FILE' (local weights, e.g. "
          "timm:resnet50:resnet50.safetensors; needs pip install -e '.[timm]')",
    parse=_parse,
    load=_load,
    class_names=lambda fields: [f"class {i}" for i in range(_load(fields).num_classes)],
    input_spec=None,
))
