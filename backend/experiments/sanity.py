"""Experiment 7 (paper A.10; Adebayo et al.'s model-randomization test): an explanation that survives the
destruction of the model it explains explains nothing.

The model's stages (its direct children with parameters) are re-initialized one after another, last first,
and after each step the input-space map is recomputed (with saliency statistics re-estimated for the
randomized model) and compared with the original map by Spearman rank correlation. Grad-CAM goes through
the same cascade as a reference.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from backend.saliency import SaliencyStats, filter_saliency, input_saliency

from .common import Context, bootstrap, result, spearman, write
from .gradcam import cam_layer, grad_cam
from .registry import Experiment, register

MAX_SAMPLES = 32
STATS_SAMPLES = 256


def stages(model: torch.nn.Module) -> list[str]:
    """Direct children that hold parameters, in forward (registration) order."""
    return [name for name, child in model.named_children() if any(True for _ in child.parameters())]


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Re-initializes every submodule with its own default init (``reset_parameters``), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()


def run_sanity(ctx: Context, max_samples: int | None = MAX_SAMPLES, stats_samples: int = STATS_SAMPLES,
               top_k: int = 10, boost: float = 100.0) -> dict:
    started = time.perf_counter()
    a = ctx.artifacts
    ids = ctx.choose(max_samples)
    order = stages(ctx.model)[::-1]
    reference = np.sort(np.random.default_rng([ctx.seed, 11]).choice(
        a.num_samples, size=min(stats_samples, a.num_samples), replace=False))
    x, y = ctx.images(ids), ctx.labels(ids)
    preds = torch.as_tensor(np.asarray(a.preds)[ids], device=ctx.device)
    target = cam_layer(ctx.model, x)
    model = copy.deepcopy(ctx.model)
    steps = [{"randomized": [], "stats": a.stats}]
    rho_map = np.full((len(ids), len(order) + 1), np.nan)
    rho_cam = np.full((len(ids), len(order) + 1), np.nan)
    original_maps, original_cams = None, None
    with ctx.bar((len(order) + 1) * len(ids), "sanity") as bar:
        for step in range(len(order) + 1):
            if step > 0:
                name = order[step - 1]
                randomize(getattr(model, name), ctx.seed + step)
                raw = filter_saliency(model, ctx.images(reference), ctx.labels(reference), batch_size=ctx.batch_size,
                                      layout=ctx.layout)
                steps.append({"randomized": [*steps[-1]["randomized"], name], "stats": SaliencyStats().update(raw)})
            stats = steps[-1]["stats"]
            maps = np.stack([input_saliency(model, x[j], y[j], stats, top_k=top_k, boost=boost,
                                            layout=ctx.layout).cpu().numpy() for j in range(len(ids))])
            cams = grad_cam(model, x, preds, target).cpu().numpy()
            if step == 0:
                original_maps, original_cams = maps, cams
            for j in range(len(ids)):
                rho_map[j, step] = spearman(original_maps[j], maps[j])
                rho_cam[j, step] = spearman(original_cams[j], cams[j])
            bar.update(len(ids))
    results = {
        "steps": [", ".join(s["randomized"]) or "original" for s in steps],
        "randomized_stage": ["none", *order],
        "input_saliency_spearman": bootstrap(rho_map, ctx.seed),
        "gradcam_spearman": bootstrap(rho_cam, ctx.seed),
    }
    params = {"stages_last_first": order, "stats_samples": int(len(reference)), "top_k": top_k, "boost": boost,
              "randomization": "reset_parameters() of every submodule (BatchNorm running stats reset too), seeded",
              "gradcam_layer": target.name, "max_samples": max_samples}
    doc = result(ctx, "sanity", params, ids, results, started)
    write(ctx, doc)
    return doc


register(Experiment("sanity", "Sanity check: cascading randomization", "A.10", run_sanity,
                    quick={"max_samples": 16, "stats_samples": 128}))
