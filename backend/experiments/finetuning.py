"""Experiment 4 (paper 3.3, Fig. 6, B.1): one gradient step on a misclassified sample's n most salient filters
also fixes its nearest neighbours in saliency space, more than a step of the same size on n random or n least
salient filters, or on the whole network.

The step is plain SGD with a fixed step size on the sample's own cross-entropy loss, BatchNorm in eval mode.
Random and least salient filters' gradients are rescaled to the salient filters' gradient norm, so that all
three steps have the same length and only the choice of filters differs.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from backend.saliency import row_weight_deltas
from backend.saliency.profile import eval_mode, logits_of

from .common import Context, bootstrap, result, salient_orders, write
from .registry import Experiment, Flag, register

DEFAULT_NS = (1, 5, 25, 75, 150, 300)
MODES = ("salient", "random", "least")
# On the demo, steps of 0.01 or more saturate: most samples are corrected whichever 75+ filters move
# (docs/results.md); 0.001 keeps the salient / random / least comparison informative.
STEP_SIZE = 0.001
K = 10
MAX_SAMPLES = 200
# Dense weight deltas per configuration: bounds floats held at once (configs are chunked to fit).
_DELTA_FLOATS = 25_000_000


def run_finetuning(ctx: Context, ns=DEFAULT_NS, step_size: float = STEP_SIZE, k: int = K,
                   max_samples: int | None = MAX_SAMPLES) -> dict:
    started = time.perf_counter()
    a = ctx.artifacts
    ns = sorted({int(n) for n in ns if 1 <= int(n) <= ctx.layout.num_filters})
    ids = ctx.choose(max_samples)
    configs = [(mode, n) for mode in MODES for n in ns]
    weights = sum(int(np.prod(s.shape)) for s in ctx.layout.spans)
    chunk = max(1, min(len(configs), _DELTA_FLOATS // weights))
    shape = (len(ids), len(configs))
    self_fixed, nb_fixed, nb_true = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    whole = np.full((len(ids), 3), np.nan)
    params = dict(ctx.model.named_parameters())
    with eval_mode(ctx.model), ctx.bar(len(ids), "finetuning") as bar:
        for row, sample in enumerate(ids):
            neighbours = [h["id"] for h in a.neighbors(int(sample), k=k, misclassified_only=True)]
            group = np.array([int(sample), *neighbours])
            x, y = ctx.images(group), ctx.labels(group)
            base = ctx.probs(x)
            grads = _gradients(ctx, x[:1], y[:1], params)
            orders = salient_orders(ctx.z([sample]), np.array([sample]), ctx.seed, max(ns))
            norms = torch.cat([grads[s.name].flatten(1).norm(dim=1) for s in ctx.layout.spans])  # [F]
            for start in range(0, len(configs), chunk):
                part = configs[start : start + chunk]
                deltas = _deltas(ctx, grads, norms, orders, part, step_size)
                xs = x.repeat(len(part), 1, 1, 1)
                with row_weight_deltas(ctx.model, ctx.layout, deltas, group_size=len(group)):
                    probs = ctx.probs(xs).view(len(part), len(group), -1)
                for j, _ in enumerate(part):
                    self_fixed[row, start + j], nb_fixed[row, start + j], nb_true[row, start + j] = _score(
                        probs[j], base, y)
            stepped = {name: p.detach() - step_size * grads[name] for name, p in params.items()}
            with torch.no_grad():
                probs = F.softmax(logits_of(functional_call(ctx.model, stepped, (x,))).float(), dim=1)
            whole[row] = _score(probs, base, y)
            bar.update(1)
    curves = {}
    for m, mode in enumerate(MODES):
        cols = slice(m * len(ns), (m + 1) * len(ns))
        curves[mode] = {
            "sample_corrected": bootstrap(self_fixed[:, cols], ctx.seed + m),
            "neighbors_corrected": bootstrap(nb_fixed[:, cols], ctx.seed + m),
            "neighbors_true_conf_change": bootstrap(nb_true[:, cols], ctx.seed + m),
        }
    whole_network = {
        "sample_corrected": bootstrap(whole[:, 0], ctx.seed),
        "neighbors_corrected": bootstrap(whole[:, 1], ctx.seed),
        "neighbors_true_conf_change": bootstrap(whole[:, 2], ctx.seed),
    }
    params_doc = {"ns": ns, "modes": list(MODES), "step_size": step_size, "k": k, "max_samples": max_samples,
                  "optimizer": "one plain SGD step on the sample's cross-entropy, BatchNorm in eval mode",
                  "renormalized": "random/least filters' gradients scaled to the salient filters' gradient norm",
                  "neighbours": "k nearest misclassified samples in saliency space"}
    doc = result(ctx, "finetuning", params_doc, ids,
                 {"n": ns, "curves": curves, "whole_network": whole_network}, started)
    write(ctx, doc)
    return doc


def _gradients(ctx: Context, x, y, params: dict) -> dict[str, torch.Tensor]:
    names = [name for name, p in params.items() if p.requires_grad]
    with torch.enable_grad():
        loss = F.cross_entropy(logits_of(ctx.model(x)), y)
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return {n: (torch.zeros_like(params[n]) if g is None else g.detach()) for n, g in zip(names, grads)}


def _deltas(ctx: Context, grads, norms: torch.Tensor, orders: dict, configs, step_size: float) -> dict:
    """``{conv name: [len(configs), *shape]}``: minus the step on the chosen filters, zero elsewhere."""
    spans = ctx.layout.spans
    scale = torch.zeros(len(configs), ctx.layout.num_filters, device=norms.device, dtype=norms.dtype)
    for g, (mode, n) in enumerate(configs):
        chosen = torch.as_tensor(orders[mode][0, :n], device=norms.device)
        factor = 1.0
        if mode != "salient":
            target = norms[torch.as_tensor(orders["salient"][0, :n], device=norms.device)].norm()
            own = norms[chosen].norm()
            factor = float(target / own) if float(own) > 0 else 0.0
        scale[g, chosen] = -step_size * factor
    deltas = {}
    for span in spans:
        part = scale[:, span.start : span.stop]
        if bool(part.any()):
            deltas[span.name] = grads[span.name][None] * part[:, :, None, None, None]
    return deltas


def _score(probs: torch.Tensor, base: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """(sample corrected, fraction of neighbours corrected, neighbours' mean true-class confidence change)."""
    hit = (probs.argmax(1) == y).double()
    true_change = (probs.gather(1, y[:, None]) - base.gather(1, y[:, None]))[:, 0].double()
    if len(y) == 1:
        return float(hit[0]), float("nan"), float("nan")
    return float(hit[0]), float(hit[1:].mean()), float(true_change[1:].mean())


register(Experiment("finetuning", "One-step fine-tuning of salient filters", "3.3, Fig. 6, B.1", run_finetuning,
                    flags=(Flag("--step-size", "step_size", float, "fine-tuning SGD step size (default: 0.001)", "LR"),),
                    quick={"ns": (1, 5, 25, 100)}))
