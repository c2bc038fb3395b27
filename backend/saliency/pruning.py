"""Turning filters off for one caller only, without touching the model's parameters."""

from __future__ import annotations

import contextvars
import itertools
import weakref
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .hooks import HookSet
from .layout import FilterLayout

# Ids of the prune_filters contexts active in the current thread / asyncio task. Hooks installed by one
# context act only where its id is in here, so concurrent callers never see each other's pruning.
_ACTIVE: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("pss_active_prunings", default=frozenset())
_NEXT_ID = itertools.count()


class prune_filters:
    """Context manager: the chosen filters' feature maps are exactly zero, in this thread/task only.

    ``filter_ids`` are switched off for every row of the batch. ``keep`` (``[rows, num_filters]``, bool or
    0/1) gives each row its own set instead: row r sees filter f off where ``keep[r, f] == 0``, so a batch of
    rows with different pruned sets costs one forward; every forward inside the block must then have exactly
    ``rows`` rows. Both may be given (a filter is off if either says so).

    A BatchNorm applied directly to a pruned conv's output would turn zeros into its shift; its output
    channels are zeroed too. Parameters are never modified; the hooks are removed on exit.
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
        # id(conv weight) -> [rows or 1, out channels] bool: which channels each row keeps
        self._keep: dict[int, torch.Tensor] = {}
        for span in self.layout.spans:
            rows = keep[:, span.start : span.stop].bool() if keep is not None else None
            if span.name in off:
                row = torch.ones(1, span.num_filters, dtype=torch.bool, device=None if rows is None else rows.device)
                row[0, off[span.name]] = False
                rows = row if rows is None else rows & row
            if rows is not None and not bool(rows.all()):
                self._keep[id(params[span.name])] = rows
        self._id = next(_NEXT_ID)
        self._token = None
        self._masks: dict[tuple[int, torch.device, torch.dtype, int], torch.Tensor] = {}
        # conv outputs we zeroed, by id, for spotting a BatchNorm whose input is one of them
        self._zeroed: dict[int, tuple[weakref.ref, torch.Tensor]] = {}
        self._hooks = HookSet(
            [(m, self._on_conv) for m in model.modules() if isinstance(m, nn.Conv2d) and id(m.weight) in self._keep]
            + [(m, self._on_batchnorm) for m in model.modules() if isinstance(m, _BatchNorm) and self._keep]
        )

    def __enter__(self) -> "prune_filters":
        self._hooks.__enter__()
        self._token = _ACTIVE.set(_ACTIVE.get() | {self._id})
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)
        self._hooks.remove()
        self._zeroed.clear()

    def _mask(self, key: int, output: torch.Tensor) -> torch.Tensor:
        cache_key = (key, output.device, output.dtype, output.dim())
        mask = self._masks.get(cache_key)
        if mask is None:
            keep = self._keep[key]
            mask = keep.to(output.device, output.dtype).view(*keep.shape, *([1] * (output.dim() - 2)))
            self._masks[cache_key] = mask
        if mask.shape[0] not in (1, output.shape[0]):
            raise ValueError(f"prune_filters was given keep for {mask.shape[0]} rows, the batch has {output.shape[0]}")
        return mask

    def _on_conv(self, conv: nn.Conv2d, args, output: torch.Tensor):
        if self._id not in _ACTIVE.get():
            return None
        mask = self._mask(id(conv.weight), output)
        pruned = output * mask
        self._zeroed = {k: v for k, v in self._zeroed.items() if v[0]() is not None}
        self._zeroed[id(pruned)] = (weakref.ref(pruned), mask)
        return pruned

    def _on_batchnorm(self, bn: _BatchNorm, args, output: torch.Tensor):
        if self._id not in _ACTIVE.get():
            return None
        entry = self._zeroed.get(id(args[0]))
        if entry is None or entry[0]() is not args[0]:
            return None
        return output * entry[1]
