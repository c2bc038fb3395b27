"""Per-row weight changes in one forward pass, through forward hooks, never modifying the parameters.

The experiments change each sample's own filters (one-step fine-tuning, random perturbation) and compare
several changes per sample; ``row_weight_deltas`` lets a batch of such rows cost one forward instead of one
per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .hooks import HookSet
from .layout import FilterLayout


class row_weight_deltas:
    """Rows come in ``G`` consecutive groups of ``M``; every conv of group g computes with ``W + deltas[name][g]``.

    ``deltas`` maps a conv weight's parameter name to ``[G, *weight.shape]``; convs without an entry are
    unchanged. A conv is linear in its weight, so the change is added as one grouped convolution of the
    layer's input with all groups' deltas (exact up to float rounding).
    """

    def __init__(self, model: nn.Module, layout: FilterLayout, deltas: dict[str, torch.Tensor], group_size: int = 1):
        self.group_size = group_size
        by_weight = {
            id(m.weight): m for m in model.modules()
            if isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward and not parametrize.is_parametrized(m)
        }
        params = dict(model.named_parameters())
        self.deltas: dict[int, torch.Tensor] = {}
        for name, delta in deltas.items():
            conv = by_weight.get(id(params[name])) if name in params else None
            if conv is None:
                raise ValueError(f"{name}: weight changes are supported for weights of plain nn.Conv2d layers only")
            if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
                raise ValueError(f"{name}: only zero-padded convs with numeric padding are supported")
            if tuple(delta.shape[1:]) != tuple(conv.weight.shape):
                raise ValueError(f"delta for {name} must be [groups, *{tuple(conv.weight.shape)}]")
            self.deltas[id(conv)] = delta
        self._hooks = HookSet((m, self._on_conv) for m in model.modules() if id(m) in self.deltas)

    def __enter__(self) -> "row_weight_deltas":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.remove()

    def _on_conv(self, conv: nn.Conv2d, args, output):
        delta = self.deltas[id(conv)].to(output.device, output.dtype)
        groups, m = delta.shape[0], self.group_size
        x = args[0]
        if x.shape[0] != groups * m:
            raise ValueError(f"row_weight_deltas expects {groups} x {m} rows, the batch has {x.shape[0]}")
        cin, height, width = x.shape[1:]
        xs = x.view(groups, m, cin, height, width).transpose(0, 1).reshape(m, groups * cin, height, width)
        weight = delta.reshape(groups * delta.shape[1], *delta.shape[2:])
        change = F.conv2d(xs, weight, None, conv.stride, conv.padding, conv.dilation, groups * conv.groups)
        cout = delta.shape[1]
        change = change.view(m, groups, cout, *change.shape[2:]).transpose(0, 1).reshape(output.shape)
        return output + change
