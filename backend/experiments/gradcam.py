"""Grad-CAM (Selvaraju et al.), and experiment 6 (paper A.9): how the input-space saliency map relates to it.

Grad-CAM answers "which regions support the predicted class"; the paper's input-space map answers "which
pixels make the salient filters salient". The paper shows the two highlight different regions; here their
agreement is measured as the Spearman rank correlation of the two maps and the overlap of their top pixels.
"""

from __future__ import annotations

import time

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


def grad_cam(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, target: str | None = None) -> torch.Tensor:
    """``[B, H, W] >= 0``: ReLU(sum_k alpha_k A_k), upsampled (bilinear) to the input size.

    ``A`` is the output of module ``target`` (default ``last_conv_stage``) and ``alpha_k`` the spatial mean of
    ``d logit_class / d A_k``. Samples do not interact in eval mode, so a batch is one forward and backward.
    """
    module = dict(model.named_modules())[target or last_conv_stage(model)]
    kept: list[torch.Tensor] = []
    with HookSet([(module, lambda _m, _a, out: kept.append(out))]), eval_mode(model), torch.enable_grad():
        logits = logits_of(model(images.detach()))
        (activations,) = kept
        score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
        (grads,) = torch.autograd.grad(score, activations)
    alpha = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * activations.detach()).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


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
    target = last_conv_stage(ctx.model)
    rho, overlap = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
    shown = []
    preds = np.asarray(a.preds)
    done = 0
    with ctx.bar(len(ids), "gradcam") as bar:
        for chunk in ctx.batches(ids):
            x, y = ctx.images(chunk), ctx.labels(chunk)
            cams = grad_cam(ctx.model, x, torch.as_tensor(preds[chunk], device=ctx.device), target).cpu().numpy()
            for j, sample in enumerate(chunk):
                heat = input_saliency(ctx.model, x[j], y[j], a.stats, top_k=top_k, boost=boost,
                                      layout=ctx.layout).cpu().numpy()
                rho[done + j] = spearman(heat, cams[j])
                overlap[done + j] = top_overlap(heat, cams[j])
                if len(shown) < examples:
                    shown.append({"id": int(sample), "label": int(a.labels[sample]), "pred": int(preds[sample]),
                                  "input_saliency": downsample_map(heat), "gradcam": downsample_map(cams[j]),
                                  "spearman": _finite(rho[done + j]), "top_overlap": round(float(overlap[done + j]), 4)})
                bar.update(1)
            done += len(chunk)
    params = {"gradcam_layer": target, "gradcam_class": "predicted", "input_saliency": {"top_k": top_k, "boost": boost,
              "label": "true"}, "top_fraction": TOP_FRACTION, "max_samples": max_samples}
    results = {"spearman": bootstrap(rho, ctx.seed), "top_overlap": bootstrap(overlap, ctx.seed),
               "chance_top_overlap": round(TOP_FRACTION / (2 - TOP_FRACTION), 6), "examples": shown}
    doc = result(ctx, "gradcam", params, ids, results, started)
    write(ctx, doc)
    return doc


def _finite(value: float):
    return round(float(value), 4) if np.isfinite(value) else None


register(Experiment("gradcam", "Input-space saliency vs Grad-CAM", "A.9", run_gradcam))
