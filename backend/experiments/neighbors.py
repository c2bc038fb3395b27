"""Experiment 3 (paper 3.2, A.2): misclassified samples that are close in saliency space make the same mistake.

For each misclassified sample, the fraction of its k nearest misclassified neighbours whose (true, predicted)
pair equals its own or the reverse (a shirt taken for a T-shirt, or a T-shirt taken for a shirt), in
saliency space (all layers, shallow half, deep half), in feature space (penultimate layer), and by chance
(the fraction among all other misclassified samples).
"""

from __future__ import annotations

import time

import numpy as np

from .common import Context, bootstrap, result, write
from .registry import Experiment, register

K = 10


def run_neighbors(ctx: Context, k: int = K) -> dict:
    started = time.perf_counter()
    a = ctx.artifacts
    labels, preds = np.asarray(a.labels), np.asarray(a.preds)
    mistakes = ctx.mistakes
    ids = ctx.choose(None)
    half = max(1, len(ctx.layout) // 2)
    spaces = {
        "saliency": {"space": "saliency"},
        "saliency_shallow": {"space": "saliency", "layers": (0, half)},
        "saliency_deep": {"space": "saliency", "layers": (half, len(ctx.layout))} if half < len(ctx.layout) else None,
        "feature": {"space": "feature"},
    }
    spaces = {name: query for name, query in spaces.items() if query is not None}
    shares = {name: np.full(len(ids), np.nan) for name in [*spaces, "chance"]}
    pairs = {(int(t), int(p)) for t, p in zip(labels[mistakes], preds[mistakes])}
    counts = {pair: int(np.sum((labels[mistakes] == pair[0]) & (preds[mistakes] == pair[1]))) for pair in pairs}
    with ctx.bar(len(ids), "neighbors") as bar:
        for row, sample in enumerate(ids):
            own = (int(labels[sample]), int(preds[sample]))
            same = {own, own[::-1]}
            for name, query in spaces.items():
                hits = a.neighbors(int(sample), k=k, misclassified_only=True, **query)
                if hits:
                    shares[name][row] = np.mean([(int(labels[h["id"]]), int(preds[h["id"]])) in same for h in hits])
            others = len(mistakes) - 1
            if others > 0:
                matching = counts.get(own, 0) - 1 + (counts.get(own[::-1], 0) if own[0] != own[1] else 0)
                shares["chance"][row] = matching / others
            bar.update(1)
    results = {name: bootstrap(values, ctx.seed) for name, values in shares.items()}
    params = {"k": k, "neighbours": "misclassified samples only, cosine similarity",
              "layers": {"shallow": [0, half], "deep": [half, len(ctx.layout)]},
              "match": "same (true, predicted) pair or its reverse"}
    doc = result(ctx, "neighbors", params, ids, {"share": results}, started)
    write(ctx, doc)
    return doc


register(Experiment("neighbors", "Nearest neighbours share their mistakes", "3.2, A.2", run_neighbors))
