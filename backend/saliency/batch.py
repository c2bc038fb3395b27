"""Everything a dataset row needs from one forward/backward: raw profile, logits and penultimate features.

The precompute job and the backend's uploads both call ``profile_batch``, so an upload's profile and
features are made exactly as the stored ones are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activations import channel_max_hooks
from .hooks import HookSet
from .layout import FilterLayout
from .profile import filter_saliency, logits_of


class UnsupportedModel(ValueError):
    """The model cannot give what a batch needs (no module to take features from, outputs that are not logits)."""


@dataclass(frozen=True)
class BatchOutputs:
    raw: torch.Tensor  # [B, F] float32 raw filter saliency, CPU
    features: torch.Tensor  # [B, D] float32, CPU
    logits: torch.Tensor  # [B, C] float32, CPU
    feature_layer: str  # the module whose input the features are
    maxima: torch.Tensor | None = None  # [B, F] float32 channel maxima, CPU, when asked for


def feature_candidates(model: nn.Module, feature_layer: str | None) -> dict[str, nn.Module]:
    """The module named ``feature_layer``, or by default every ``nn.Linear`` (the last one to run wins)."""
    modules = dict(model.named_modules())
    if feature_layer is not None:
        if feature_layer not in modules:
            raise UnsupportedModel(f"the model has no module named {feature_layer!r} (--feature-layer)")
        return {feature_layer: modules[feature_layer]}
    linear = {name: m for name, m in modules.items() if isinstance(m, nn.Linear)}
    if not linear:
        raise UnsupportedModel("the model has no nn.Linear head to take penultimate features from; "
                               "name a module with --feature-layer")
    return linear


def profile_batch(model: nn.Module, layout: FilterLayout, images: torch.Tensor, labels: torch.Tensor,
                  feature_layer: str | None, *, channel_maxima: bool = False) -> BatchOutputs:
    """Raw profiles, features and logits of one batch, from the single forward/backward of ``filter_saliency``.

    Features are the input of ``feature_layer`` or, by default, of the last ``nn.Linear`` that runs during the
    forward pass: the classifier head of torchvision CNNs and of the demo ResNet. With ``channel_maxima``, also
    each filter's largest output-channel value per sample (``activations.channel_max_hooks``), from that same pass.
    """
    last_features: list[tuple[str, torch.Tensor]] = []  # (module name, its flattened input), last to run
    logits: list[torch.Tensor] = []

    def keep_features(name):
        def hook(_module, args, _output):
            last_features[:] = [(name, torch.flatten(args[0].detach(), 1))]

        return hook

    def keep_logits(_module, _args, output):
        logits.append(logits_of(output).detach())

    hooks = [(m, keep_features(name)) for name, m in feature_candidates(model, feature_layer).items()]
    maxima = None
    if channel_maxima:
        maxima = torch.full((images.shape[0], layout.num_filters), -torch.inf, dtype=torch.float32,
                            device=next(model.parameters()).device)
        hooks += channel_max_hooks(model, layout, maxima)
    with HookSet([*hooks, (model, keep_logits)]):
        raw = filter_saliency(model, images, labels, batch_size=images.shape[0], layout=layout)
    if len(logits) != 1 or not last_features or last_features[0][1].shape[0] != images.shape[0]:
        raise RuntimeError("expected exactly one forward pass per batch inside filter_saliency")
    name, feature = last_features[0]
    out = logits[0].to("cpu", torch.float32)
    if out.dim() != 2:
        raise UnsupportedModel(f"the model's output has shape {tuple(out.shape)}; expected [batch, classes] logits")
    return BatchOutputs(raw.to(torch.float32).cpu(), feature.to("cpu", torch.float32), out, name,
                        None if maxima is None else maxima.cpu())
