"""Per-sample channel maxima: for every filter, the largest value its output channel takes over all positions.

The activation side of a filter's reference samples (activation maximization). The hooks are the engine's,
so the precompute job can take the maxima in the same forward pass as the profile (``profile_batch``).
"""

from __future__ import annotations

import torch
from torch import nn

from .layout import FilterLayout


def channel_max_hooks(model: nn.Module, layout: FilterLayout, maxima: torch.Tensor) -> list[tuple[nn.Module, object]]:
    """``(module, forward hook)`` pairs that fold each forward's channel maxima into ``maxima[B, F]`` (start it
    at -inf). A conv filter's channel is dim 1 of its module's output (max over the spatial dims); a Linear
    row's is the last dim (max over tokens). A module called twice contributes the max over its calls."""
    return [(owner_module(model, span.name), _max_hook(maxima, span, len(span.shape) == 2)) for span in layout.spans]


def owner_module(model: nn.Module, param_name: str) -> nn.Module:
    """The module that uses a weight: its parent, or the parametrized module for ``...parametrizations.W.original``."""
    parts = param_name.split(".")[:-1]
    if "parametrizations" in parts:
        parts = parts[: parts.index("parametrizations")]
    return model.get_submodule(".".join(parts))


def _max_hook(maxima: torch.Tensor, span, is_linear: bool):
    def hook(_module, _args, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"cannot read the output channels of {span.name}: its module returns {type(output).__name__}")
        channels = output.shape[-1] if is_linear else output.shape[1] if output.dim() > 1 else None
        if output.shape[0] != maxima.shape[0] or channels != span.num_filters:
            raise ValueError(
                f"the output of {span.name} has shape {tuple(output.shape)}; expected {span.num_filters} channels"
            )
        per_channel = output.detach().reshape(output.shape[0], -1, channels) if is_linear else output.detach().flatten(2)
        block = per_channel.amax(dim=1 if is_linear else 2).to(maxima.dtype)
        maxima[:, span.start : span.stop] = torch.maximum(maxima[:, span.start : span.stop], block)

    return hook
