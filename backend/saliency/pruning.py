"""Turning filters off for one caller only, without touching the model's parameters."""

from __future__ import annotations

import contextvars
import itertools
import weakref
from collections.abc import Iterable

import torch
from torch import nn

from .hooks import HookSet
from .intercept import WeightOpHandler, WeightOpMode, WeightUse, rows_by_sample, sample_dim
from .layout import FilterLayout

# Ids of the prune_filters contexts active in the current thread / asyncio task. Hooks installed by one
# context act only where its id is in here, so concurrent callers never see each other's pruning.
_ACTIVE: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("pss_active_prunings", default=frozenset())
_NEXT_ID = itertools.count()


class prune_filters(WeightOpHandler):
    """Context manager: the chosen filters' outputs are exactly zero, in this thread/task only.

    ``filter_ids`` are switched off for every row of the batch. ``keep`` (``[rows, num_filters]``, bool or
    0/1) gives each row its own set instead: row r sees filter f off where ``keep[r, f] == 0``, so a batch of
    rows with different pruned sets costs one forward; every forward inside the block must then have exactly
    ``rows`` rows. Both may be given (a filter is off if either says so).

    A conv filter's output channel is zeroed, a Linear row's output feature (``nn.MultiheadAttention``'s
    projections included), wherever the op runs: the same as zeroing that weight row and its bias entry.
    A BatchNorm applied directly to a pruned conv's output would turn zeros into its shift; its output
    channels are zeroed too. Parameters are never modified; the model's forward sees the ops through a
    ``TorchFunctionMode`` entered and left by hooks on the model itself, which are removed on exit.
    """

    def __init__(self, model: nn.Module, filter_ids: Iterable[int] = (), layout: FilterLayout | None = None, *,
                 keep: torch.Tensor | None = None):
        self.model = model
        self.layout = layout or FilterLayout.from_model(model)
        params = dict(model.named_parameters())
        off: dict[str, list[int]] = {}
        for filter_id in filter_ids:
            name, channel = self.layout.locate(int(filter_id))
            off.setdefault(name, []).append(channel)
        if keep is not None and keep.shape[1:] != (self.layout.num_filters,):
            raise ValueError(f"keep must be [rows, {self.layout.num_filters}], got {tuple(keep.shape)}")
        # id(filter weight) -> [rows or 1, filters] bool: which filters each row keeps
        self._keep: dict[int, torch.Tensor] = {}
        self._names: dict[int, str] = {}
        for span in self.layout.spans:
            rows = keep[:, span.start : span.stop].bool() if keep is not None else None
            if span.name in off:
                row = torch.ones(1, span.num_filters, dtype=torch.bool, device=None if rows is None else rows.device)
                row[0, off[span.name]] = False
                rows = row if rows is None else rows & row
            if rows is not None and not bool(rows.all()):
                self._keep[id(params[span.name])] = rows
                self._names[id(params[span.name])] = span.name
        self._id = next(_NEXT_ID)
        self._token = None
        self._masks: dict[tuple, torch.Tensor] = {}
        # outputs we zeroed, by id, for spotting a BatchNorm whose input is one of them
        self._zeroed: dict[int, tuple[weakref.ref, torch.Tensor]] = {}
        watched = [p for p in model.parameters() if id(p) in self._keep]
        constants = [*model.buffers(), *(p for p in model.parameters() if id(p) not in self._keep)]
        self._mode = WeightOpMode(watched, constants, self)
        self._hooks = HookSet([(model, self._leave)], pre_hooks=[(model, self._enter)], always_call=True) \
            if self._keep else HookSet([])

    def __enter__(self) -> "prune_filters":
        self._hooks.__enter__()
        self._token = _ACTIVE.set(_ACTIVE.get() | {self._id})
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)
        self._hooks.remove()
        self._zeroed.clear()
        self._masks.clear()

    def _enter(self, model, args) -> None:
        if self._id in _ACTIVE.get():
            self._mode.__enter__()

    def _leave(self, model, args, output) -> None:
        if self._id in _ACTIVE.get():  # the forward ran in the same context as its pre-hook
            self._mode.__exit__(None, None, None)
            self._zeroed = {k: v for k, v in self._zeroed.items() if v[0]() is not None}

    def _rows_kept(self, use: WeightUse) -> torch.Tensor:
        """``[rows or 1, filters of this op]`` of the use's weight."""
        param = use.params[0]
        if not use.direct and (len(use.params) > 1 or use.weight.shape[0] != param.shape[0]):
            raise ValueError(f"cannot prune filters of {self._names[id(param)]}: its weight reaches the op through "
                             "a transform that does not keep its rows")
        keep = self._keep[id(param)]
        return keep[:, use.row_start : use.row_start + use.weight.shape[0]]

    def _mask(self, use: WeightUse, output: torch.Tensor, channel_dim: int) -> torch.Tensor:
        key = (id(use.params[0]), use.row_start, use.weight.shape[0], output.device, output.dtype, output.dim())
        mask = self._masks.get(key)
        if mask is None:
            keep = self._rows_kept(use)
            shape = [1] * output.dim()
            shape[channel_dim] = keep.shape[1]
            mask = keep.to(output.device, output.dtype)
            mask = mask.view(keep.shape[0], *shape[1:]) if channel_dim == 1 else mask
            self._masks[key] = mask
        return mask

    def conv(self, x, call, use: WeightUse, out):
        mask = self._mask(use, out, 1)
        if mask.shape[0] not in (1, out.shape[0]):
            raise ValueError(f"prune_filters was given keep for {mask.shape[0]} rows, the batch has {out.shape[0]}")
        pruned = out * mask
        self._zeroed[id(pruned)] = (weakref.ref(pruned), mask)
        return pruned

    def linear(self, x, use: WeightUse, out, dim):
        mask = self._mask(use, out, out.dim() - 1)  # [rows or 1, features]
        rows = mask.shape[0]
        if rows == 1:
            return out * mask[0]
        dim = sample_dim(out.shape, rows) if dim is None else dim
        if dim is None or out.dim() <= dim or out.shape[dim] % rows:
            raise ValueError(f"prune_filters was given keep for {rows} rows; cannot tell them apart in an output "
                             f"of shape {tuple(out.shape)} of {self._names[id(use.params[0])]}")
        grouped = rows_by_sample(out, rows, dim) * mask[:, None, :]
        moved = out.movedim(dim, 0).shape
        return grouped.reshape(moved).movedim(0, dim)

    def batch_norm(self, x, out):
        entry = self._zeroed.get(id(x))
        if entry is None or entry[0]() is not x:
            return out
        return out * entry[1]
