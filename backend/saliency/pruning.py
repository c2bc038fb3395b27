"""Turning filters off for one caller only, without touching the model's parameters."""

from __future__ import annotations

import contextvars
import itertools
import weakref
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .layout import FilterLayout

# Ids of the prune_filters contexts active in the current thread / asyncio task. Hooks installed by one
# context act only where its id is in here, so concurrent callers never see each other's pruning.
_ACTIVE: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("pss_active_prunings", default=frozenset())
_NEXT_ID = itertools.count()


class prune_filters:
    """Context manager: the chosen filters' feature maps are exactly zero, in this thread/task only.

    A BatchNorm applied directly to a pruned conv's output would turn zeros into its shift; its output
    channels are zeroed too. Parameters are never modified; the hooks are removed on exit.
    """

    def __init__(self, model: nn.Module, filter_ids: Iterable[int], layout: FilterLayout | None = None):
        self.model = model
        self.layout = layout or FilterLayout.from_model(model)
        params = dict(model.named_parameters())
        channels: dict[int, list[int]] = {}
        for filter_id in filter_ids:
            name, channel = self.layout.locate(int(filter_id))
            channels.setdefault(id(params[name]), []).append(channel)
        self._channels = channels
        self._id = next(_NEXT_ID)
        self._handles: list = []
        self._token = None
        self._masks: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}
        # conv outputs we zeroed, by id, for spotting a BatchNorm whose input is one of them
        self._zeroed: dict[int, tuple[weakref.ref, torch.Tensor]] = {}

    def __enter__(self) -> "prune_filters":
        try:
            for module in self.model.modules():
                if isinstance(module, nn.Conv2d) and id(module.weight) in self._channels:
                    self._handles.append(module.register_forward_hook(self._on_conv))
                elif isinstance(module, _BatchNorm):
                    self._handles.append(module.register_forward_hook(self._on_batchnorm))
        except BaseException:
            self._remove()
            raise
        self._token = _ACTIVE.set(_ACTIVE.get() | {self._id})
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._zeroed.clear()

    def _mask(self, key: int, output: torch.Tensor) -> torch.Tensor:
        cache_key = (key, output.device, output.dtype)
        mask = self._masks.get(cache_key)
        if mask is None:
            mask = torch.ones(output.shape[1], device=output.device, dtype=output.dtype)
            mask[self._channels[key]] = 0
            self._masks[cache_key] = mask = mask.view(1, -1, *([1] * (output.dim() - 2)))
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
