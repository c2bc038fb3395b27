"""What every experiment shares: the loaded model/data/artifacts, sample selection, statistics, JSON output."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.saliency import FilterLayout
from backend.saliency.profile import logits_of

from .registry import EXPERIMENTS, RESULTS_DIR

BOOTSTRAP_RESAMPLES = 1000
# `pss experiments --quick`: mistakes per experiment, sized so that all of them finish in about 3 minutes on
# the demo on 2 cores (docs/results.md has the measured time)
QUICK_LIMIT = 40


@dataclass
class Context:
    """One artifacts dir with its model and dataset, checked to match, plus the run's shared settings."""

    artifacts: object
    model: nn.Module
    dataset: object
    command: str
    seed: int = 0
    limit: int | None = None
    batch_size: int = 64
    progress: bool = True
    progress_lines: bool = False  # "progress DONE TOTAL" lines on stdout instead of bars (for the API's jobs)
    layout: FilterLayout = field(init=False)
    _images: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self):
        self.layout = self.artifacts.layout
        self.device = next(self.model.parameters()).device

    @property
    def mistakes(self) -> np.ndarray:
        """Ids of all misclassified samples, ascending."""
        return np.flatnonzero(~np.asarray(self.artifacts.correct))

    def choose(self, cap: int | None) -> np.ndarray:
        """The misclassified samples an experiment uses: all of them, or a seeded subset of ``min(cap, --limit)``
        (kept in ascending id order so results do not depend on the cap's draw order)."""
        ids = self.mistakes
        bound = min(c for c in (cap, self.limit, len(ids)) if c is not None)
        if bound < len(ids):
            ids = np.sort(np.random.default_rng([self.seed, 7]).choice(ids, size=bound, replace=False))
        return ids

    def images(self, ids) -> torch.Tensor:
        """Preprocessed images of sample ids, ``[B, C, H, W]`` on the model's device."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._images is None and hasattr(self.dataset, "tensors"):
            bulk = self.dataset.tensors()
            self._images = bulk[0] if bulk is not None else None
        if self._images is not None:
            batch = self._images[torch.from_numpy(ids)]
        else:
            batch = torch.stack([self.dataset[int(i)][0] for i in ids])
        return batch.to(self.device, next(self.model.parameters()).dtype)

    def labels(self, ids) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.artifacts.labels)[np.asarray(ids)], device=self.device, dtype=torch.long)

    def z(self, ids) -> np.ndarray:
        """Standardized profiles ``[B, F]`` of sample ids."""
        return np.asarray(self.artifacts.profiles_std[np.asarray(ids)], dtype=np.float32)

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits_of(self.model(x)).float(), dim=1)

    def batches(self, ids: np.ndarray, size: int | None = None):
        size = size or self.batch_size
        for start in range(0, len(ids), size):
            yield ids[start : start + size]

    def bar(self, total: int, desc: str):
        if self.progress_lines:
            return _ProgressLines(total)
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="sample", disable=not self.progress, leave=False, dynamic_ncols=True)


class _ProgressLines:
    """A tqdm stand-in that prints ``progress DONE TOTAL`` at most twice a second (and at the end)."""

    def __init__(self, total: int, interval_s: float = 0.5):
        self.total, self.done, self.interval_s, self._last = total, 0, interval_s, 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        print(f"progress {self.done} {self.total}", flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            print(f"progress {self.done} {self.total}", flush=True)


def salient_orders(z: np.ndarray, ids: np.ndarray, seed: int, n_max: int) -> dict[str, np.ndarray]:
    """Per sample, the first ``n_max`` filters in each mode's order: most salient, seeded random, least salient."""
    n_max = min(n_max, z.shape[1])
    random = np.stack([np.random.default_rng([seed, int(i)]).permutation(z.shape[1])[:n_max] for i in ids])
    return {
        "salient": np.argsort(-z, axis=1, kind="stable")[:, :n_max],
        "random": random,
        "least": np.argsort(z, axis=1, kind="stable")[:, :n_max],
    }


def bootstrap(values, seed: int, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95) -> dict:
    """Mean over axis 0 and its percentile bootstrap confidence interval (seeded), as JSON-ready lists.

    NaN entries (undefined for that sample) are left out of their column."""
    values = np.asarray(values, dtype=np.float64)
    scalar = values.ndim == 1
    values = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
    count = np.sum(~np.isnan(values), axis=0)
    if values.shape[0] == 0:
        empty = [None] * values.shape[1]
        out = {"mean": empty, "low": empty, "high": empty, "count": count.tolist()}
        return {k: v[0] for k, v in out.items()} if scalar else out
    idx = np.random.default_rng(seed).integers(0, values.shape[0], size=(resamples, values.shape[0]))
    with np.errstate(invalid="ignore"), _quiet():
        means = np.nanmean(values[idx], axis=1)  # [resamples, K]
        mean = np.nanmean(values, axis=0)
        alpha = (1 - level) / 2
        low, high = np.nanquantile(means, alpha, axis=0), np.nanquantile(means, 1 - alpha, axis=0)
    out = {"mean": _list(mean), "low": _list(low), "high": _list(high), "count": count.tolist()}
    return {k: v[0] for k, v in out.items()} if scalar else out


class _quiet:
    """Silences numpy's 'mean of empty slice' warnings for all-NaN columns (reported as null)."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def _list(array) -> list:
    return [None if not math.isfinite(v) else round(float(v), 6) for v in np.asarray(array, dtype=np.float64)]


def rankdata(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), like ``scipy.stats.rankdata``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based
    return ranks


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps (NaN when either is constant)."""
    ra, rb = rankdata(np.asarray(a)), rankdata(np.asarray(b))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / denom) if denom > 0 else float("nan")


def downsample_map(heat: torch.Tensor | np.ndarray, max_side: int = 56) -> list[list[float]]:
    """A map small enough for JSON: average-pooled so that no side exceeds ``max_side``, rounded."""
    heat = torch.as_tensor(np.asarray(heat, dtype=np.float32))
    h, w = heat.shape
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        heat = F.adaptive_avg_pool2d(heat[None, None], (max(1, round(h * scale)), max(1, round(w * scale))))[0, 0]
    return [[round(float(v), 5) for v in row] for row in heat.tolist()]


def result(ctx: Context, name: str, params: dict, samples: np.ndarray, results: dict, started: float) -> dict:
    """The JSON document of one experiment: what was run, on what, with which settings, and its numbers."""
    experiment = EXPERIMENTS[name]
    a = ctx.artifacts
    return {
        "experiment": name,
        "title": experiment.title,
        "paper": experiment.paper,
        "command": ctx.command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "artifacts": {
            "dir": str(a.directory),
            "model": a.model_spec,
            "data": a.data_spec,
            "num_samples": int(a.num_samples),
            "num_misclassified": int(len(ctx.mistakes)),
            "num_filters": int(ctx.layout.num_filters),
            "accuracy": float(a.accuracy),
        },
        "params": {"seed": ctx.seed, **params},
        "num_samples": int(len(samples)),
        "sample_ids": [int(i) for i in samples],
        "results": results,
    }


def write(ctx: Context, doc: dict) -> Path:
    """``DIR/experiments/<name>.json``, atomically (temp + rename)."""
    from backend.store.atomic import write_json_atomic

    out = Path(ctx.artifacts.directory) / RESULTS_DIR
    out.mkdir(exist_ok=True)
    path = out / f"{doc['experiment']}.json"
    write_json_atomic(path, doc)
    return path
