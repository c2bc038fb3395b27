"""Per-row weight changes in one forward pass, never modifying the parameters.

The experiments change each sample's own filters (one-step fine-tuning, random perturbation) and compare
several changes per sample; ``row_weight_deltas`` lets a batch of such rows cost one forward instead of one
per row. The ops are seen as the engine sees them (intercept.py), so every layout the profiles cover works:
conv subclasses, functional convs, ``nn.Linear`` rows (``nn.MultiheadAttention`` projections included) and
weights behind a ``torch.nn.utils.parametrize`` parametrization.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .hooks import HookSet
from .intercept import ConvCall, WeightOpHandler, WeightOpMode, WeightUse, rows_by_sample, sample_dim
from .layout import FilterLayout


class row_weight_deltas(WeightOpHandler):
    """Rows come in ``G`` consecutive groups of ``M``; every op of group g computes with ``W + deltas[name][g]``.

    ``deltas`` maps a filter weight's parameter name (a layout name) to ``[G, *param.shape]``; weights
    without an entry are unchanged. Conv and linear ops are linear in their weight, so the change is added
    as one grouped op of the layer's input with all groups' weight changes (exact up to float rounding).
    A parametrized weight is recomputed from its changed originals for each group. A weight that reaches
    the output any other way (a transform computed in ``forward``, such as weight standardization, or an op
    other than conv / linear) raises ValueError at the forward.
    """

    def __init__(self, model: nn.Module, layout: FilterLayout, deltas: dict[str, torch.Tensor], group_size: int = 1):
        self.group_size = group_size
        params = dict(model.named_parameters())
        filters = {span.name for span in layout.spans}
        self._deltas: dict[int, torch.Tensor] = {}
        self._names: dict[int, str] = {}
        for name, delta in deltas.items():
            if name not in filters or name not in params:
                raise ValueError(f"{name}: not a filter weight of this layout")
            if tuple(delta.shape[1:]) != tuple(params[name].shape):
                raise ValueError(f"delta for {name} must be [groups, *{tuple(params[name].shape)}]")
            self._deltas[id(params[name])] = delta
            self._names[id(params[name])] = name
        self._parametrizations = _parametrizations_by_original(model)
        watched = [p for p in params.values() if id(p) in self._deltas]
        constants = [*model.buffers(), *(p for p in params.values() if id(p) not in self._deltas)]
        self._mode = WeightOpMode(watched, constants, self)
        self._hooks = HookSet([(model, self._leave)], pre_hooks=[(model, self._enter)], always_call=True) \
            if watched else HookSet([])

    def __enter__(self) -> "row_weight_deltas":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.remove()

    def _enter(self, model, args) -> None:
        self._mode.__enter__()

    def _leave(self, model, args, output) -> None:
        self._mode.__exit__(None, None, None)

    # -- the ops ----------------------------------------------------------------------------------------

    def conv(self, x, call: ConvCall, use: WeightUse, out):
        change = self._weight_change(use)  # [G, *weight.shape]
        groups, m = change.shape[0], self._rows_per_group(out.shape[0], change.shape[0])
        x = call.padded(x)
        cin, height, width = x.shape[1:]
        xs = x.reshape(groups, m, cin, height, width).transpose(0, 1).reshape(m, groups * cin, height, width)
        weight = change.reshape(groups * change.shape[1], *change.shape[2:])
        moved = F.conv2d(xs, weight, None, call.stride, call.padding, call.dilation, groups * call.groups)
        cout = change.shape[1]
        return out + moved.view(m, groups, cout, *moved.shape[2:]).transpose(0, 1).reshape(out.shape)

    def linear(self, x, use: WeightUse, out, dim):
        change = self._weight_change(use)  # [G, out, in]
        groups = change.shape[0]
        rows = groups * self.group_size
        batch = sample_dim(out.shape, rows) if dim is None else dim
        if batch is None or out.dim() <= batch or out.shape[batch] % rows:
            raise ValueError(f"row_weight_deltas expects {groups} x {self.group_size} rows; cannot tell them apart "
                             f"in an output of shape {tuple(out.shape)} of {self._name(use)}")
        xs = rows_by_sample(x, groups, batch)  # [G, the group's rows x tokens, in]
        moved = torch.bmm(xs, change.transpose(1, 2))
        moved = moved.reshape(out.movedim(batch, 0).shape).movedim(0, batch)
        return out + moved

    def other_use(self, params) -> None:
        names = ", ".join(self._names[id(p)] for p in params if id(p) in self._names)
        raise ValueError(f"row_weight_deltas cannot change {names}: its weight reaches the output through an op "
                         "other than a conv or linear one")

    # -- helpers -----------------------------------------------------------------------------------------

    def _name(self, use: WeightUse) -> str:
        return self._names[id(use.params[0])]

    def _rows_per_group(self, rows: int, groups: int) -> int:
        if rows != groups * self.group_size:
            raise ValueError(f"row_weight_deltas expects {groups} x {self.group_size} rows, the batch has {rows}")
        return self.group_size

    def _weight_change(self, use: WeightUse) -> torch.Tensor:
        """``[G, *use.weight.shape]``: how each group's change of the parameters changes the op's weight."""
        if use.direct:
            delta = self._deltas[id(use.params[0])]
            return delta[:, use.row_start : use.row_start + use.weight.shape[0]].to(use.weight.device,
                                                                                     use.weight.dtype)
        owner = {self._parametrizations.get(id(p)) for p in use.params}
        plist = owner.pop() if len(owner) == 1 else None
        with torch.no_grad():
            if plist is None or not torch.equal(_evaluate(plist, {}), use.weight):
                raise ValueError(f"row_weight_deltas cannot change {self._name(use)}: its weight reaches the op "
                                 "through a transform computed in forward (only torch.nn.utils.parametrize "
                                 "parametrizations are recomputed)")
            groups = next(iter(self._deltas[id(p)] for p in use.params)).shape[0]
            changed = [
                _evaluate(plist, {id(p): self._deltas[id(p)][g] for p in use.params}) for g in range(groups)
            ]
        return torch.stack(changed) - use.weight.detach()


def _parametrizations_by_original(model: nn.Module) -> dict[int, parametrize.ParametrizationList]:
    """id(original parameter) -> the parametrization list it feeds."""
    return {id(p): plist for _, _, plist in parametrizations(model) for _, p in originals_of(plist)}


def parametrizations(model: nn.Module) -> Iterator[tuple[str, str, parametrize.ParametrizationList]]:
    """``(module prefix, tensor name, parametrization)`` of every parametrized tensor of ``model``; the prefix
    is the module's state-dict prefix ("" or "name.")."""
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            prefix = f"{module_name}." if module_name else ""
            for tensor_name, plist in module.parametrizations.items():
                yield prefix, tensor_name, plist


def originals_of(plist: parametrize.ParametrizationList) -> list[tuple[str, torch.Tensor]]:
    """``(name, parameter)`` of the originals a parametrization computes its tensor from, in call order."""
    if plist.is_tensor:
        return [("original", plist.original)]
    return [(f"original{i}", getattr(plist, f"original{i}")) for i in range(plist.ntensors)]


def evaluate_parametrization(plist: parametrize.ParametrizationList, originals: list[torch.Tensor]) -> torch.Tensor:
    """The parametrized tensor computed from ``originals`` in place of the stored ones."""
    first, *rest = list(plist)
    value = first(*originals)
    for transform in rest:
        value = transform(value)
    return value


def _evaluate(plist: parametrize.ParametrizationList, deltas: dict[int, torch.Tensor]) -> torch.Tensor:
    """The parametrized tensor computed from its originals plus ``deltas`` (by id of the original)."""
    originals = [p + deltas[id(p)].to(p.device, p.dtype) if id(p) in deltas else p for _, p in originals_of(plist)]
    return evaluate_parametrization(plist, originals)
