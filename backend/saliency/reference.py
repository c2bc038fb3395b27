"""The definition, computed the slow way: one ``torch.autograd.grad`` call per sample.

Tests check the batched engine against this, and ``pss bench profiles`` times it as the baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from .layout import FilterLayout
from .model_calls import eval_mode, model_device_dtype, per_sample_loop


def reference_filter_saliency(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layout: FilterLayout | None = None
) -> torch.Tensor:
    """``[N, num_filters]``: per sample, the filter weights' gradient of its own loss, ``|.|`` averaged per filter."""
    layout = layout or FilterLayout.from_model(model)
    params = dict(model.named_parameters())
    weights = [params[span.name] for span in layout.spans]
    device, dtype = model_device_dtype(model)
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            rows = per_sample_loop(model, weights, images.to(device=device, dtype=dtype), labels.to(device))
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
    return rows.to(images.device)
