"""Pruning written into weights: a state dict in which chosen filters are off for good, for downloading."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .hooks import HookSet
from .layout import FilterLayout
from .profile import eval_mode


def pruned_state_dict(model: nn.Module, filter_ids: Iterable[int], example: torch.Tensor,
                      layout: FilterLayout | None = None) -> dict[str, torch.Tensor]:
    """A copy of ``model.state_dict()`` computing what ``prune_filters(model, filter_ids)`` computes.

    Each chosen filter's weights (and bias) are zero, and so are the scale and shift of a BatchNorm that
    directly follows its conv (found by one forward of ``example``), so that channel stays exactly zero.
    """
    layout = layout or FilterLayout.from_model(model)
    params = dict(model.named_parameters())
    off: dict[str, list[int]] = {}
    for filter_id in filter_ids:
        name, channel = layout.locate(int(filter_id))
        off.setdefault(name, []).append(channel)
    conv_weight = {id(m): id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    names = {id(p): n for n, p in params.items()}
    module_names = {id(m): n for n, m in model.named_modules()}
    outputs: list[tuple[torch.Tensor, str]] = []  # (conv output, conv weight name), kept alive while matching
    following: dict[str, str] = {}  # BatchNorm module name -> conv weight name it directly follows

    def on_conv(conv, _args, output):
        outputs.append((output, names[conv_weight[id(conv)]]))

    def on_batchnorm(bn, args, _output):
        for tensor, weight_name in outputs:
            if tensor is args[0]:
                following[module_names[id(bn)]] = weight_name

    hooks = [(m, on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [(m, on_batchnorm) for m in model.modules() if isinstance(m, _BatchNorm)]
    with HookSet(hooks), eval_mode(model), torch.no_grad():
        model(example)
    outputs.clear()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for weight_name, channels in off.items():
        state[weight_name][channels] = 0
        bias = weight_name.removesuffix("weight") + "bias"
        if weight_name.endswith("weight") and bias in state:
            state[bias][channels] = 0
    for bn_name, weight_name in following.items():
        if weight_name in off:
            for part in ("weight", "bias"):
                if f"{bn_name}.{part}" in state:
                    state[f"{bn_name}.{part}"][off[weight_name]] = 0
    return state
