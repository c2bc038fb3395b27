"""Calling a model the way every part of the engine does: eval mode, logits, its device and dtype."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def logits_of(output) -> torch.Tensor:
    """The logits tensor of a model's output (plain tensor, ``.logits``, or first element of a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (where its inputs must go)."""
    for param in model.parameters():
        return param.device, param.dtype if param.is_floating_point() else torch.float32
    raise ValueError("the model has no parameters")


@contextmanager
def eval_mode(model: nn.Module):
    """Eval mode for the duration, then every module's own train/eval flag restored."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False):
            yield
    finally:
        for module, training in modes:
            module.training = training


def per_sample_loop(
    model: nn.Module, weights: list[torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
    *, create_graph: bool = False,
) -> torch.Tensor:
    """``[N, sum of rows]``: one ``torch.autograd.grad`` per sample, ``|.|`` averaged per weight row.

    The definition of filter saliency, for any model; the weights must require grad and the model be in the
    mode wanted. Weights a sample's loss does not reach get 0."""
    rows = []
    for x, y in zip(images, labels):
        loss = F.cross_entropy(logits_of(model(x[None])), y[None])
        grads = torch.autograd.grad(loss, weights, allow_unused=True, create_graph=create_graph)
        rows.append(torch.cat([
            w.new_zeros(w.shape[0]) if g is None else g.abs().flatten(1).mean(dim=1) for w, g in zip(weights, grads)
        ]))
    return torch.stack(rows)
