"""Input-space saliency (the paper's eq. 3): which pixels drive the sample's most salient filters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .layout import FilterLayout
from .model_calls import eval_mode, logits_of, model_device_dtype
from .profile import SaliencyRecorder
from .stats import SaliencyStats


def input_saliency(
    model: nn.Module,
    image: torch.Tensor,
    label: int | torch.Tensor,
    stats: SaliencyStats,
    top_k: int = 10,
    boost: float = 100.0,
    *,
    layout: FilterLayout | None = None,
    filters: list[int] | None = None,
) -> torch.Tensor:
    """``[H, W] >= 0``: ``max_c |d cos_distance(s(x), s_boosted) / dx_c|``.

    ``s(x)`` is the standardized saliency profile of ``image`` ``[C, H, W]`` and ``s_boosted`` a constant
    copy with its ``top_k`` largest entries multiplied by ``boost``: pixels whose change would make the
    profile point further towards its own most salient filters get large values. ``filters`` boosts exactly
    those filter ids instead (``top_k`` is then unused), to see which pixels drive one chosen filter.
    """
    layout = layout or FilterLayout.from_model(model)
    if filters is not None:
        if not filters or min(filters) < 0 or max(filters) >= layout.num_filters:
            raise ValueError(f"filters must be a non-empty list of ids in [0, {layout.num_filters}), got {filters}")
    elif not 1 <= top_k <= layout.num_filters:
        raise ValueError(f"top_k must be in [1, {layout.num_filters}], got {top_k}")
    if not boost > 0:
        raise ValueError(f"boost must be > 0, got {boost}")
    if image.dim() != 3:
        raise ValueError(f"expected one image [C, H, W], got shape {tuple(image.shape)}")
    device, dtype = model_device_dtype(model)
    target = torch.as_tensor(label, device=device).reshape(1)
    # the math attention kernel: the fused CPU/GPU attention kernels have no double backward (transformers)
    with (eval_mode(model), sdpa_kernel(SDPBackend.MATH),
          SaliencyRecorder(model, layout, differentiable=True) as recorder):
        loss = F.cross_entropy(logits_of(recorder.forward(image[None].to(device=device, dtype=dtype))), target,
                               reduction="sum")
        x = recorder.input
        torch.autograd.grad(loss, x, create_graph=True)
        profile = stats.standardize(recorder.profile(target)[0])
        boosted = profile.detach().clone()
        chosen = boosted.topk(top_k).indices if filters is None else torch.as_tensor(filters, device=boosted.device)
        boosted[chosen] *= boost
        distance = 1 - F.cosine_similarity(profile, boosted, dim=0)
        (grad,) = torch.autograd.grad(distance, x)
    return grad[0].abs().amax(dim=0).to(image.device)
