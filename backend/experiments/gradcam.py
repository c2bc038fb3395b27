"""Grad-CAM (Selvaraju et al.), and experiment 6 (paper A.9): how the input-space saliency map relates to it.

Grad-CAM answers "which regions support the predicted class"; the paper's input-space map answers "which
pixels make the salient filters salient". The paper shows the two highlight different regions; here their
agreement is measured as the Spearman rank correlation of the two maps and the overlap of their top pixels.

A low agreement only means something if another pixel map, compared the same way, agrees more: the control
is the plain input gradient of the loss (|dL/dx|, max over channels). Grad-CAM has the resolution of its
feature map (4x4 on the demo), so the maps are compared there too (average-pooled to that size) as well as
at pixel resolution, where Grad-CAM's bilinear upsampling makes most pixel ranks meaningless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.saliency import HookSet, input_saliency
from backend.saliency.profile import eval_mode, logits_of

from .common import Context, bootstrap, downsample_map, result, spearman, write
from .registry import Experiment, register

MAX_SAMPLES = 200
EXAMPLES = 6
TOP_FRACTION = 0.05


def last_conv_stage(model: nn.Module) -> str:
    """Name of the model's last direct child that contains a conv (``layer4`` of a ResNet, ``features`` of a
    VGG/DenseNet): Grad-CAM's usual target, the last stage with spatial resolution."""
    name = None
    for child_name, child in model.named_children():
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            name = child_name
    if name is None:
        raise ValueError("the model has no child module containing a Conv2d")
    return name


# a token sequence holds the patch grid after at most this many class / register / distillation tokens
_MAX_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class CamLayer:
    """Where Grad-CAM reads its feature map: a module's output ``[B, C, h, w]``, or, for transformers, the
    tokens ``[B, prefix + h * w, C]`` entering the last block, whose last ``h * w`` are the patch grid. (The
    usual ViT Grad-CAM: the class token reads the patches in that block's attention; after it, the head
    sees only the class token, so the patch tokens there have no gradient.)"""

    name: str
    grid: tuple[int, int] | None = None
    prefix: int = 0
    channels_last: bool = False  # the module's output is ``[B, h, w, C]`` (Swin's stages)

    def feature_map(self, tokens_or_map: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` from what the hook kept."""
        if self.grid is None:
            return tokens_or_map.permute(0, 3, 1, 2) if self.channels_last else tokens_or_map
        tokens = tokens_or_map[:, self.prefix :]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *self.grid)

    def kept(self, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return args[0] if self.grid is not None else output


def cam_layer(model: nn.Module, example: torch.Tensor) -> CamLayer:
    """The last spatial feature map of one forward of ``example``: ``last_conv_stage``'s output, or, when
    transformer blocks run after the patch embedding, the patch tokens entering the last block.

    A block is a child of an ``nn.Sequential`` / ``nn.ModuleList`` whose input is ``[B, T, C]`` with T a few
    prefix tokens plus the ``h x w`` grid of a conv output with C channels seen earlier in the forward. A
    stage output ``[B, h, w, C]`` that a LayerNorm over its last dim also saw is read as channels-last."""
    modules = dict(model.named_modules())
    in_lists = {f"{name}.{child}" if name else child for name, m in modules.items()
                if isinstance(m, (nn.Sequential, nn.ModuleList)) for child, _ in m.named_children()}
    seen: list[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None, type]] = []  # forward order

    def shape(value) -> tuple[int, ...] | None:
        return tuple(value.shape) if isinstance(value, torch.Tensor) else None

    def record(name: str):
        return lambda module, args, out: seen.append(
            (name, shape(args[0]) if args else None, shape(out), type(module)))

    with HookSet([(m, record(n)) for n, m in modules.items() if n]), eval_mode(model), torch.no_grad():
        model(example[:1])
    grids: dict[int, tuple[int, int]] = {}  # channels -> (h, w) of conv outputs so far
    found = None
    stage = last_conv_stage(model)
    channels_last = {inputs for _, inputs, _, kind in seen if issubclass(kind, nn.LayerNorm) and inputs
                     and len(inputs) == 4}
    for name, inputs, output, kind in seen:
        if issubclass(kind, nn.Conv2d) and output is not None and len(output) == 4:
            grids[output[1]] = output[2:]
        if name == stage and output is not None and len(output) == 4:
            found = CamLayer(name, channels_last=output in channels_last)
        grid = grids.get(inputs[-1]) if inputs is not None and len(inputs) == 3 else None
        if name in in_lists and grid is not None and 0 <= inputs[1] - grid[0] * grid[1] <= _MAX_PREFIX_TOKENS:
            found = CamLayer(name, tuple(grid), inputs[1] - grid[0] * grid[1])
    if found is None:
        raise ValueError("Grad-CAM needs a spatial feature map: no conv stage or patch-token block was found")
    return found


def grad_cam(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, target: CamLayer | str | None = None,
             upsample: bool = True) -> torch.Tensor:
    """``[B, H, W] >= 0``: ReLU(sum_k alpha_k A_k), upsampled (bilinear) to the input size unless ``upsample``
    is false (then at the feature map's own resolution).

    ``A`` is the feature map of ``target`` (a module name, or ``cam_layer``'s answer by default) and
    ``alpha_k`` the spatial mean of ``d logit_class / d A_k``. Samples do not interact in eval mode, so a batch
    is one forward and backward.
    """
    if not isinstance(target, CamLayer):
        target = CamLayer(target) if target is not None else cam_layer(model, images)
    module = dict(model.named_modules())[target.name]
    kept: list[torch.Tensor] = []
    with HookSet([(module, lambda _m, args, out: kept.append(target.kept(args, out)))]), eval_mode(model), \
            torch.enable_grad():
        logits = logits_of(model(images.detach()))
        (features,) = kept
        score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
        (grads,) = torch.autograd.grad(score, features)
    activations, grads = target.feature_map(features.detach()), target.feature_map(grads)
    alpha = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * activations).sum(dim=1, keepdim=True))
    if not upsample:
        return cam[:, 0]
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B, H, W] >= 0``: ``max_c |d CE(model(x), y) / dx_c|``, the plain gradient map (samples are
    independent in eval mode, so the summed loss gives each sample its own gradient)."""
    with eval_mode(model), torch.enable_grad():
        x = images.detach().clone().requires_grad_()
        loss = F.cross_entropy(logits_of(model(x)), labels.to(x.device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.abs().amax(dim=1)


def pooled(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A pixel map average-pooled to ``size`` (Grad-CAM's feature-map resolution)."""
    return F.adaptive_avg_pool2d(torch.as_tensor(heat, dtype=torch.float64)[None, None], size)[0, 0].numpy()


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Intersection over union of the two maps' top ``fraction`` pixels."""
    count = max(1, int(round(fraction * a.size)))
    top_a = set(np.argsort(-a.ravel(), kind="stable")[:count].tolist())
    top_b = set(np.argsort(-b.ravel(), kind="stable")[:count].tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def run_gradcam(ctx: Context, max_samples: int | None = MAX_SAMPLES, examples: int = EXAMPLES,
                top_k: int = 10, boost: float = 100.0) -> dict:
    started = time.perf_counter()
    a = ctx.artifacts
    ids = ctx.choose(max_samples)
    target = None
    # per sample: rho / overlap of (input-space map, Grad-CAM), (input gradient, Grad-CAM), (input-space map,
    # input gradient) at pixel resolution, and rho at Grad-CAM's resolution
    keys = ("saliency_cam", "gradient_cam", "saliency_gradient")
    rho = {k: np.full(len(ids), np.nan) for k in keys}
    overlap = {k: np.full(len(ids), np.nan) for k in keys}
    rho_low = {k: np.full(len(ids), np.nan) for k in keys}
    shown = []
    preds = np.asarray(a.preds)
    feature_size = None
    done = 0
    with ctx.bar(len(ids), "gradcam") as bar:
        for chunk in ctx.batches(ids):
            x, y = ctx.images(chunk), ctx.labels(chunk)
            classes = torch.as_tensor(preds[chunk], device=ctx.device)
            target = target or cam_layer(ctx.model, x)
            cams = grad_cam(ctx.model, x, classes, target).cpu().numpy()
            cams_low = grad_cam(ctx.model, x, classes, target, upsample=False).cpu().numpy()
            grads = input_gradient(ctx.model, x, y).cpu().numpy()
            feature_size = tuple(cams_low.shape[1:])
            for j, sample in enumerate(chunk):
                heat = input_saliency(ctx.model, x[j], y[j], a.stats, top_k=top_k, boost=boost,
                                      layout=ctx.layout).cpu().numpy()
                pairs = {"saliency_cam": (heat, cams[j]), "gradient_cam": (grads[j], cams[j]),
                         "saliency_gradient": (heat, grads[j])}
                low = {"saliency_cam": (pooled(heat, feature_size), cams_low[j]),
                       "gradient_cam": (pooled(grads[j], feature_size), cams_low[j]),
                       "saliency_gradient": (pooled(heat, feature_size), pooled(grads[j], feature_size))}
                for key in keys:
                    rho[key][done + j] = spearman(*pairs[key])
                    overlap[key][done + j] = top_overlap(*pairs[key])
                    rho_low[key][done + j] = spearman(*low[key])
                if len(shown) < examples:
                    shown.append({"id": int(sample), "label": int(a.labels[sample]), "pred": int(preds[sample]),
                                  "input_saliency": downsample_map(heat), "gradcam": downsample_map(cams[j]),
                                  "input_gradient": downsample_map(grads[j]),
                                  "spearman": _finite(rho["saliency_cam"][done + j]),
                                  "top_overlap": round(float(overlap["saliency_cam"][done + j]), 4)})
                bar.update(1)
            done += len(chunk)
    params = {"gradcam_layer": target.name if target else None,
              "gradcam_tokens": {"grid": list(target.grid), "prefix_tokens": target.prefix} if target and target.grid else None,
              "gradcam_class": "predicted", "input_saliency": {"top_k": top_k, "boost": boost,
              "label": "true"}, "input_gradient": "max over channels of |d CE(true label) / dx|",
              "top_fraction": TOP_FRACTION, "max_samples": max_samples,
              "feature_resolution": "maps average-pooled to Grad-CAM's feature map; Grad-CAM not upsampled"}
    compared = {key: {"spearman": bootstrap(rho[key], ctx.seed), "top_overlap": bootstrap(overlap[key], ctx.seed),
                      "spearman_feature_resolution": bootstrap(rho_low[key], ctx.seed)} for key in keys}
    results = {"spearman": compared["saliency_cam"]["spearman"], "top_overlap": compared["saliency_cam"]["top_overlap"],
               "pairs": {"input_saliency_vs_gradcam": compared["saliency_cam"],
                         "input_gradient_vs_gradcam": compared["gradient_cam"],
                         "input_saliency_vs_input_gradient": compared["saliency_gradient"]},
               "feature_size": list(feature_size) if feature_size else None,
               "chance_top_overlap": round(TOP_FRACTION / (2 - TOP_FRACTION), 6), "examples": shown}
    doc = result(ctx, "gradcam", params, ids, results, started)
    write(ctx, doc)
    return doc


def _finite(value: float):
    return round(float(value), 4) if np.isfinite(value) else None


register(Experiment("gradcam", "Input-space saliency vs Grad-CAM", "A.9", run_gradcam))
