"""A toy experiment: how confident the model is in its mistakes (mean top-1 probability, bootstrap CI)."""

from __future__ import annotations

import time

import numpy as np

from .common import Context, bootstrap, result, write
from .registry import Experiment, Flag, register


def run_confidence(ctx: Context, resamples: int = 1000) -> dict:
    started = time.perf_counter()
    ids = ctx.choose(None)
    confidence = np.asarray(ctx.artifacts.probs)[ids].max(axis=1)
    doc = result(ctx, "confidence", {"resamples": resamples}, ids,
                 {"confidence": bootstrap(confidence, ctx.seed, resamples=resamples)}, started)
    write(ctx, doc)
    return doc


register(Experiment("confidence", "Confidence of the mistakes (toy)", "none", run_confidence,
                    flags=(Flag("--resamples", "resamples", int, "toy: bootstrap resamples (default: 1000)", "N"),)))
