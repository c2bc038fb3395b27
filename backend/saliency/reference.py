"""The definition, computed the slow way: one ``torch.autograd.grad`` call per sample.

Tests check the batched engine against this, and ``pss bench profiles`` times it as the baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import FilterLayout
from .profile import eval_mode, logits_of, model_device_dtype


def reference_filter_saliency(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layout: FilterLayout | None = None
) -> torch.Tensor:
    """``[N, num_filters]``: per sample, the conv weights' gradient of its own loss, ``|.|`` averaged per filter."""
    layout = layout or FilterLayout.from_model(model)
    params = dict(model.named_parameters())
    weights = [params[span.name] for span in layout.spans]
    device, dtype = model_device_dtype(model)
    flags = [w.requires_grad for w in weights]
    rows = []
    try:
        for w in weights:
            w.requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            for x, y in zip(images, labels):
                logits = logits_of(model(x[None].to(device=device, dtype=dtype)))
                loss = F.cross_entropy(logits, y[None].to(device))
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                rows.append(
                    torch.cat(
                        [
                            torch.zeros(w.shape[0], device=device, dtype=dtype)
                            if g is None
                            else g.abs().flatten(1).mean(dim=1)
                            for w, g in zip(weights, grads)
                        ]
                    )
                )
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
    return torch.stack(rows).to(images.device)
