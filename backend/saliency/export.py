"""Pruning written into weights: a state dict in which chosen filters are off for good, for downloading."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from .hooks import HookSet
from .intercept import WeightOpHandler, WeightOpMode
from .layout import FilterLayout
from .profile import eval_mode
from .weight_deltas import evaluate_parametrization, originals_of, parametrizations


def pruned_state_dict(model: nn.Module, filter_ids: Iterable[int], example: torch.Tensor,
                      layout: FilterLayout | None = None) -> dict[str, torch.Tensor]:
    """A copy of ``model.state_dict()`` computing what ``prune_filters(model, filter_ids)`` computes.

    Each chosen filter's weights (and bias) are zero, and so are the scale and shift of a BatchNorm that
    directly follows its conv (found by one forward of ``example``), so that channel stays exactly zero.
    A parametrized weight's rows are zeroed through one of its originals, chosen so that the computed rows
    are exactly zero and finite (weight norm: the magnitude, since a zero direction gives 0/0).
    """
    layout = layout or FilterLayout.from_model(model)
    off: dict[str, list[int]] = {}
    for filter_id in filter_ids:
        name, channel = layout.locate(int(filter_id))
        off.setdefault(name, []).append(channel)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    parametrized = _parametrized_weights(model)
    for weight_name, channels in off.items():
        if weight_name in parametrized:
            prefix, tensor_name, plist = parametrized[weight_name]
            _zero_parametrized_rows(state, prefix, tensor_name, plist, channels)
        else:
            prefix, tensor_name = "", weight_name
            state[weight_name][channels] = 0
        bias = prefix + tensor_name.removesuffix("weight") + "bias"
        if tensor_name.endswith("weight") and bias in state:
            state[bias][channels] = 0
    for bn_name, weight_name in _batchnorms_after(model, off, example).items():
        for part in ("weight", "bias"):
            if f"{bn_name}.{part}" in state:
                state[f"{bn_name}.{part}"][off[weight_name]] = 0
    return state


class _ConvOutputs(WeightOpHandler):
    """Remembers which filter weight produced each conv output of a forward."""

    def __init__(self, names: dict[int, str]):
        self.names = names
        self.outputs: list[tuple[torch.Tensor, str]] = []  # kept alive while the forward runs

    def conv(self, x, call, use, out):
        self.outputs.append((out, self.names[id(use.params[0])]))
        return out


def _batchnorms_after(model: nn.Module, off: dict[str, list[int]], example: torch.Tensor) -> dict[str, str]:
    """BatchNorm module name -> the pruned filter weight whose conv output it directly normalizes."""
    params = dict(model.named_parameters())
    watched = [params[name] for name in off]
    recorder = _ConvOutputs({id(params[name]): name for name in off})
    constants = [*model.buffers(), *(p for p in params.values() if id(p) not in recorder.names)]
    following: dict[str, str] = {}

    def on_batchnorm(bn, args):
        for tensor, weight_name in recorder.outputs:
            if tensor is args[0]:
                following[bn_name[id(bn)]] = weight_name

    bn_name = {id(m): n for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    pre_hooks = [(m, on_batchnorm) for m in model.modules() if id(m) in bn_name]
    with HookSet([], pre_hooks=pre_hooks), eval_mode(model), torch.no_grad(), \
            WeightOpMode(watched, constants, recorder):
        model(example)
    recorder.outputs.clear()
    return following


def _parametrized_weights(model: nn.Module) -> dict[str, tuple[str, str, parametrize.ParametrizationList]]:
    """State-dict name of each parametrization original -> (module prefix, tensor name, its parametrization)."""
    return {f"{prefix}parametrizations.{tensor_name}.{original_name}": (prefix, tensor_name, plist)
            for prefix, tensor_name, plist in parametrizations(model) for original_name, _ in originals_of(plist)}


def _zero_parametrized_rows(state: dict[str, torch.Tensor], prefix: str, tensor_name: str,
                            plist: parametrize.ParametrizationList, rows: list[int]) -> None:
    """Zero ``rows`` of one original (the first that makes the computed rows exactly zero and finite)."""
    originals = originals_of(plist)
    stored = [p for _, p in originals]
    with torch.no_grad():
        count = evaluate_parametrization(plist, stored).shape[0]
        for index, (original_name, original) in enumerate(originals):
            if original.dim() == 0 or original.shape[0] != count:
                continue
            name = f"{prefix}parametrizations.{tensor_name}.{original_name}"
            trial = state[name].clone()
            trial[rows] = 0
            tried = [trial.to(p.device, p.dtype) if i == index else p for i, p in enumerate(stored)]
            value = evaluate_parametrization(plist, tried)
            if bool(torch.isfinite(value).all()) and not bool(value[rows].any()):
                state[name] = trial
                return
    raise ValueError(f"cannot write the pruning of {prefix}{tensor_name} into weights: no original of its "
                     "parametrization makes those rows zero")
