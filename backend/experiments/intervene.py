"""Per-row interventions in one forward pass: each row of a batch gets its own pruned filters or weight change.

``backend.saliency.prune_filters`` applies one filter set to a whole batch. The experiments need a different
set per sample (its own most salient filters) and per number of filters, so that a batch of rows
``(sample, n)`` costs one forward instead of one per row. Both context managers act through forward hooks and
never modify the model's parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from backend.saliency import FilterLayout


def _convs_by_name(model: nn.Module, layout: FilterLayout) -> dict[str, nn.Conv2d]:
    by_weight = {id(m.weight): m for m in model.modules() if isinstance(m, nn.Conv2d)}
    params = dict(model.named_parameters())
    return {span.name: by_weight[id(params[span.name])] for span in layout.spans}


class _Hooks:
    def __init__(self):
        self._handles: list = []

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class row_masks(_Hooks):
    """Row r of the batch sees filter f switched off where ``keep[r, f] == 0`` (as ``prune_filters`` does for
    a whole batch): its feature map is zero, also after a BatchNorm applied directly to it.

    ``keep`` is ``[rows, num_filters]``; every forward inside the block must have exactly ``rows`` rows.
    """

    def __init__(self, model: nn.Module, layout: FilterLayout, keep: torch.Tensor):
        super().__init__()
        if keep.shape[1:] != (layout.num_filters,):
            raise ValueError(f"keep must be [rows, {layout.num_filters}], got {tuple(keep.shape)}")
        self.model = model
        self.masks: dict[int, torch.Tensor] = {}
        for name, conv in _convs_by_name(model, layout).items():
            span = next(s for s in layout.spans if s.name == name)
            part = keep[:, span.start : span.stop]
            if not bool(part.all()):
                self.masks[id(conv)] = part.to(conv.weight.dtype)[:, :, None, None]
        self._zeroed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __enter__(self) -> "row_masks":
        try:
            for module in self.model.modules():
                if id(module) in self.masks:
                    self._handles.append(module.register_forward_hook(self._on_conv))
                elif isinstance(module, _BatchNorm) and self.masks:
                    self._handles.append(module.register_forward_hook(self._on_batchnorm))
        except BaseException:
            self.__exit__()
            raise
        return self

    def _on_conv(self, conv, args, output):
        mask = self.masks[id(conv)]
        if mask.shape[0] != output.shape[0]:
            raise ValueError(f"row_masks was built for {mask.shape[0]} rows, the batch has {output.shape[0]}")
        pruned = output * mask.to(output.device)
        self._zeroed[id(conv)] = (pruned, mask)
        return pruned

    def _on_batchnorm(self, bn, args, output):
        for pruned, mask in self._zeroed.values():
            if pruned is args[0]:
                return output * mask.to(output.device)
        return None

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._zeroed.clear()


class row_weight_deltas(_Hooks):
    """Rows come in ``G`` consecutive groups of ``M``; every conv of group g computes with ``W + deltas[name][g]``.

    ``deltas`` maps a conv weight's parameter name to ``[G, *weight.shape]``; convs without an entry are
    unchanged. A conv is linear in its weight, so the change is added as one grouped convolution of the
    layer's input with all groups' deltas (exact up to float rounding).
    """

    def __init__(self, model: nn.Module, layout: FilterLayout, deltas: dict[str, torch.Tensor], group_size: int = 1):
        super().__init__()
        self.model = model
        self.group_size = group_size
        convs = _convs_by_name(model, layout)
        self.deltas: dict[int, torch.Tensor] = {}
        for name, delta in deltas.items():
            conv = convs[name]
            if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
                raise ValueError(f"{name}: only zero-padded convs with numeric padding are supported")
            if tuple(delta.shape[1:]) != tuple(conv.weight.shape):
                raise ValueError(f"delta for {name} must be [groups, *{tuple(conv.weight.shape)}]")
            self.deltas[id(conv)] = delta

    def __enter__(self) -> "row_weight_deltas":
        try:
            for module in self.model.modules():
                if id(module) in self.deltas:
                    self._handles.append(module.register_forward_hook(self._on_conv))
        except BaseException:
            self.__exit__()
            raise
        return self

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
