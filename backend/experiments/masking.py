"""Experiment 5 (paper 3.4, Fig. 7, A.8): masking the pixels that the input-space map points at.

If those pixels are what makes the salient filters malfunction, masking them must lower those filters'
saliency and raise the true-class confidence, more than masking as many random pixels. Samples whose
true-class confidence rises by at least ``explorer_threshold`` form the "mistake explorer" list.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from backend.saliency import filter_saliency, input_saliency

from .common import Context, bootstrap, result, write
from .registry import Experiment, Flag, register

PERCENT = 5.0
TOP_FILTERS = 10
EXPLORER_THRESHOLD = 0.25


def run_masking(ctx: Context, percent: float = PERCENT, top_k: int = TOP_FILTERS, boost: float = 100.0,
                explorer_threshold: float = EXPLORER_THRESHOLD) -> dict:
    started = time.perf_counter()
    a = ctx.artifacts
    ids = ctx.choose(None)
    top_k = min(top_k, ctx.layout.num_filters)
    modes = ("salient", "random")
    true_change = {m: np.full(len(ids), np.nan) for m in modes}
    filter_change = {m: np.full(len(ids), np.nan) for m in modes}
    corrected = {m: np.full(len(ids), np.nan) for m in modes}
    explorer = []
    done = 0
    with ctx.bar(len(ids), "masking") as bar:
        for chunk in ctx.batches(ids):
            x, y = ctx.images(chunk), ctx.labels(chunk)
            z = ctx.z(chunk)
            top = np.argsort(-z, axis=1, kind="stable")[:, :top_k]
            z_before = np.take_along_axis(z, top, axis=1).mean(1)
            heats = torch.stack([input_saliency(ctx.model, x[j], y[j], a.stats, top_k=top_k, boost=boost,
                                                layout=ctx.layout) for j in range(len(chunk))])
            count = max(1, math.ceil(percent / 100 * heats[0].numel()))
            base = ctx.probs(x)
            for mode in modes:
                masked = mask_pixels(x, heats if mode == "salient" else _random_maps(ctx, chunk, heats), count)
                probs = ctx.probs(masked)
                raw = filter_saliency(ctx.model, masked, y, batch_size=len(chunk), layout=ctx.layout)
                z_after = np.asarray(a.stats.standardize(raw.cpu().numpy()), dtype=np.float64)
                rows = slice(done, done + len(chunk))
                change = (probs.gather(1, y[:, None]) - base.gather(1, y[:, None]))[:, 0].double().cpu().numpy()
                true_change[mode][rows] = change
                filter_change[mode][rows] = np.take_along_axis(z_after, top, axis=1).mean(1) - z_before
                corrected[mode][rows] = (probs.argmax(1) == y).cpu().numpy()
                if mode == "salient":
                    for j, sample in enumerate(chunk):
                        if change[j] >= explorer_threshold:
                            explorer.append({"id": int(sample), "label": int(a.labels[sample]),
                                             "pred": int(a.preds[sample]),
                                             "true_conf_before": round(float(base[j, y[j]]), 4),
                                             "true_conf_after": round(float(probs[j, y[j]]), 4),
                                             "pred_after": int(probs[j].argmax())})
            done += len(chunk)
            bar.update(len(chunk))
    explorer.sort(key=lambda e: e["true_conf_before"] - e["true_conf_after"])
    results = {
        mode: {"true_conf_change": bootstrap(true_change[mode], ctx.seed),
               "salient_filters_z_change": bootstrap(filter_change[mode], ctx.seed),
               "corrected_fraction": bootstrap(corrected[mode], ctx.seed)}
        for mode in modes
    }
    results["explorer"] = explorer
    params = {"percent": percent, "top_k": top_k, "boost": boost, "explorer_threshold": explorer_threshold,
              "fill": "0 in the model's normalized input space (the dataset's mean pixel)",
              "random": "as many pixels drawn at random, seeded per sample",
              "filters": "the sample's top_k filters by standardized saliency before masking; change of their mean z"}
    doc = result(ctx, "masking", params, ids, results, started)
    write(ctx, doc)
    return doc


def mask_pixels(images: torch.Tensor, heats: torch.Tensor, count: int) -> torch.Tensor:
    """A copy of ``images`` [B, C, H, W] with each image's ``count`` highest-``heats`` pixels set to 0 (all channels)."""
    flat = heats.reshape(heats.shape[0], -1)
    keep = torch.ones_like(flat, dtype=images.dtype)
    keep.scatter_(1, flat.topk(count, dim=1).indices, 0.0)
    return images * keep.view(images.shape[0], 1, *images.shape[2:])


def _random_maps(ctx: Context, chunk: np.ndarray, heats: torch.Tensor) -> torch.Tensor:
    shape = heats.shape[1:]
    maps = [np.random.default_rng([ctx.seed, int(i), 5]).random(shape) for i in chunk]
    return torch.as_tensor(np.stack(maps), device=heats.device)


register(Experiment("masking", "Masking salient pixels", "3.4, Fig. 7, A.8", run_masking,
                    flags=(Flag("--mask-percent", "percent", float, "masking: percent of pixels to mask (default: 5)",
                                "P"),)))
