"""Experiments 1 and 2 (paper 3.1 / Fig. 3 and A.5 / Fig. 16): switch off, or add small random noise to, each
misclassified sample's n most salient filters, against n random and n least salient ones.

If saliency points at the filters responsible for a mistake, acting on the salient filters must move the
prediction towards the true class far more than acting on as many random or least salient filters.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from backend.saliency import prune_filters, row_weight_deltas

from .common import Context, bootstrap, result, salient_orders, write
from .registry import Experiment, Flag, register

DEFAULT_NS = (0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100)
MODES = ("salient", "random", "least")
NOISE_STD = 0.001
# Perturbation keeps a dense noise tensor per row and conv; this bounds its size (floats per batch).
_NOISE_FLOATS = 25_000_000


def run_pruning(ctx: Context, ns=DEFAULT_NS) -> dict:
    return _run(ctx, "pruning", ns, noise_std=None)


def run_perturbation(ctx: Context, ns=DEFAULT_NS, noise_std: float = NOISE_STD) -> dict:
    return _run(ctx, "perturbation", ns, noise_std=noise_std)


def _run(ctx: Context, name: str, ns, noise_std: float | None) -> dict:
    started = time.perf_counter()
    num_filters = ctx.layout.num_filters
    ns = sorted({int(n) for n in ns if 0 <= int(n) <= num_filters})
    ids = ctx.choose(None)
    shape = (len(ids), len(MODES), len(ns))
    incorrect, true, corrected = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    batch = ctx.batch_size
    if noise_std is not None:
        weights = sum(int(np.prod(s.shape)) for s in ctx.layout.spans)
        batch = max(1, min(batch, _NOISE_FLOATS // weights))
    preds = np.asarray(ctx.artifacts.preds)
    done = 0
    with ctx.bar(len(ids), name) as bar:
        for chunk in ctx.batches(ids, batch):
            rows = slice(done, done + len(chunk))
            x, y = ctx.images(chunk), ctx.labels(chunk)
            wrong = torch.as_tensor(preds[chunk], device=ctx.device)
            base = ctx.probs(x)
            orders = salient_orders(ctx.z(chunk), chunk, ctx.seed, max(ns))
            for m, mode in enumerate(MODES):
                order = torch.as_tensor(orders[mode], device=ctx.device)
                noise = _noise(ctx, chunk, m) if noise_std is not None else None
                for c, n in enumerate(ns):
                    if n == 0:
                        probs = base
                    else:
                        chosen = torch.zeros(len(chunk), num_filters, device=ctx.device)
                        chosen.scatter_(1, order[:, :n], 1.0)
                        if noise is None:
                            with prune_filters(ctx.model, layout=ctx.layout, keep=chosen == 0):
                                probs = ctx.probs(x)
                        else:
                            with row_weight_deltas(ctx.model, ctx.layout, _deltas(ctx, noise, chosen, noise_std)):
                                probs = ctx.probs(x)
                    incorrect[rows, m, c] = _gather(probs, wrong) - _gather(base, wrong)
                    true[rows, m, c] = _gather(probs, y) - _gather(base, y)
                    corrected[rows, m, c] = (probs.argmax(1) == y).cpu().numpy()
            done += len(chunk)
            bar.update(len(chunk))
    curves = {}
    for m, mode in enumerate(MODES):
        seed = ctx.seed + m
        curves[mode] = {
            "incorrect_conf_change": bootstrap(incorrect[:, m], seed),
            "true_conf_change": bootstrap(true[:, m], seed),
            "corrected_fraction": bootstrap(corrected[:, m], seed),
        }
    params = {"ns": ns, "modes": list(MODES), "order": "standardized saliency (profiles_std)",
              "random": "seeded per sample: default_rng([seed, sample_id]).permutation"}
    if noise_std is not None:
        params.update(noise_std=noise_std, noise="N(0, noise_std^2) added to every weight of the chosen filters; "
                      "one draw per (sample, mode), nested over n")
    else:
        params["intervention"] = "feature maps of the chosen filters set to 0 (also after a directly following BN)"
    doc = result(ctx, name, params, ids, {"n": ns, "curves": curves}, started)
    write(ctx, doc)
    return doc


def _gather(probs: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
    return probs.gather(1, classes[:, None])[:, 0].double().cpu().numpy()


def _noise(ctx: Context, chunk: np.ndarray, mode_index: int) -> dict[str, torch.Tensor]:
    """Standard normal noise for every conv weight, one seeded draw per (sample, mode): ``{name: [B, *shape]}``."""
    draws = []
    for sample in chunk:
        seed = int(np.random.SeedSequence([ctx.seed, int(sample), mode_index]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        draws.append([torch.randn(s.shape, generator=generator) for s in ctx.layout.spans])
    return {s.name: torch.stack([d[i] for d in draws]).to(ctx.device) for i, s in enumerate(ctx.layout.spans)}


def _deltas(ctx: Context, noise: dict[str, torch.Tensor], chosen: torch.Tensor, std: float) -> dict[str, torch.Tensor]:
    deltas = {}
    for span in ctx.layout.spans:
        part = chosen[:, span.start : span.stop]
        if bool(part.any()):
            deltas[span.name] = noise[span.name] * (std * part)[:, :, None, None, None]
    return deltas


register(Experiment("pruning", "Pruning salient filters", "3.1, Fig. 3", run_pruning))
register(Experiment("perturbation", "Random perturbation of salient filters", "A.5, Fig. 16", run_perturbation,
                    flags=(Flag("--noise-std", "noise_std", float, "perturbation noise std (default: 0.001)"),)))
