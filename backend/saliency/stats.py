"""Streaming, mergeable per-filter mean and standard deviation (Chan et al.'s parallel update)."""

from __future__ import annotations

import numpy as np
import torch

# A filter whose saliency never varies over the dataset has no scale; dividing by ~0 would only amplify noise.
STD_FLOOR = 1e-14


class SaliencyStats:
    """Mean and sample std (``ddof=1``, like ``torch.std``) of raw profiles, accumulated in float64.

    ``update`` takes batches in any order and ``merge`` combines statistics of disjoint shards exactly, so
    ranks of a distributed job can each keep their own and reduce at the end.
    """

    def __init__(self, num_filters: int | None = None):
        self.count = 0
        self.mean = None if num_filters is None else np.zeros(num_filters, dtype=np.float64)
        self.m2 = None if num_filters is None else np.zeros(num_filters, dtype=np.float64)

    def update(self, raw) -> "SaliencyStats":
        """Adds a batch ``[B, F]`` (numpy or torch) of raw profiles."""
        batch = _as_float64(raw)
        if batch.ndim != 2:
            raise ValueError(f"expected a [batch, filters] array, got shape {batch.shape}")
        if batch.shape[0] == 0:
            return self
        other = SaliencyStats()
        other.count = batch.shape[0]
        other.mean = batch.mean(axis=0)
        other.m2 = ((batch - other.mean) ** 2).sum(axis=0)
        return self.merge(other)

    def merge(self, other: "SaliencyStats") -> "SaliencyStats":
        """Folds ``other`` (statistics of disjoint samples) into this one, in place; returns ``self``."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return self
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge statistics over {other.mean.shape[0]} and {self.mean.shape[0]} filters")
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total
        return self

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation per filter; zeros until two samples were seen."""
        if self.count < 2:
            return np.zeros_like(self.mean)
        return np.sqrt(self.m2 / (self.count - 1))

    def standardize(self, raw):
        """``(raw - mean) / std`` per filter, ``std <= 1e-14`` counting as 1.

        Accepts numpy arrays and torch tensors (differentiably); returns the same kind and dtype as ``raw``.
        """
        if self.count == 0:
            raise ValueError("statistics are empty: update them with a dataset's raw profiles first")
        std = self.std
        std = np.where(std <= STD_FLOOR, 1.0, std)
        if isinstance(raw, torch.Tensor):
            mean_t = torch.as_tensor(self.mean, device=raw.device)
            std_t = torch.as_tensor(std, device=raw.device)
            return ((raw.to(torch.float64) - mean_t) / std_t).to(raw.dtype)
        raw = np.asarray(raw)
        return ((raw.astype(np.float64) - self.mean) / std).astype(raw.dtype, copy=False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: mean, std, m2 (float64) and count."""
        return {"mean": self.mean, "std": self.std, "m2": self.m2, "count": np.asarray(self.count, dtype=np.int64)}

    @classmethod
    def from_state_dict(cls, state) -> "SaliencyStats":
        stats = cls()
        stats.count = int(state["count"])
        stats.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        if "m2" in state:
            stats.m2 = np.asarray(state["m2"], dtype=np.float64).copy()
        else:
            stats.m2 = np.asarray(state["std"], dtype=np.float64) ** 2 * max(stats.count - 1, 0)
        return stats


def _as_float64(raw) -> np.ndarray:
    if isinstance(raw, torch.Tensor):
        return raw.detach().to("cpu", torch.float64).numpy()
    return np.asarray(raw, dtype=np.float64)
