"""Per-filter reference samples: the K samples where a filter is most salient, and the K that activate it most.

``TopK`` keeps, per filter, the K best (value, id) pairs seen so far: largest value first, ties broken by the
smaller id. Each pair is packed into one uint64 key whose integer order *is* that order (the float32 value's
bits mapped to an order-preserving uint32 in the high half, ``ID_LIMIT - id`` in the low half), so keys are
unique and the top K of any set of rows is one well-defined set: updates in any shard order and split, and
merges across ranks, give exactly the answer of one pass over all rows. Memory is ``F * K`` keys.

``channel_maxima`` is the activation side: per sample, the max over positions (or tokens) of each filter's
output channel, which ``TopK`` then ranks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from backend.saliency import FilterLayout, HookSet
from backend.saliency.activations import channel_max_hooks
from backend.saliency.profile import eval_mode, model_device_dtype

DEFAULT_K = 32
ID_LIMIT = 2**32 - 1  # ids must be < ID_LIMIT so that the low half of a key is never 0 for a real sample
EMPTY = np.uint64(0)  # a slot not filled yet; every real key is larger (NaN, the only value that maps to 0, is refused)
# Above this fraction of candidate entries per batch, one dense partition beats sorting the candidates.
DENSE_FRACTION = 0.05


def order_keys(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """uint64 keys, same shape as ``values``, ordered like (value, then smaller id); ``ids`` broadcast."""
    values = np.asarray(values, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0: equal values, equal keys
    bits = values.view(np.uint32)
    ordered = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    low = (ID_LIMIT - np.asarray(ids, dtype=np.int64)).astype(np.uint64)
    return (ordered.astype(np.uint64) << np.uint64(32)) | low


def decode_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values float32, ids int64)`` of keys made by ``order_keys``."""
    ordered = (keys >> np.uint64(32)).astype(np.uint32)
    bits = np.where(ordered >> np.uint32(31), ordered & np.uint32(0x7FFFFFFF), ~ordered)
    ids = ID_LIMIT - (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return bits.view(np.float32), ids


class TopK:
    """Streaming per-filter top K of a ``[rows, filters]`` float32 stream with sample ids."""

    def __init__(self, num_filters: int, k: int = DEFAULT_K):
        if num_filters < 0 or k < 1:
            raise ValueError(f"need num_filters >= 0 and k >= 1, got {num_filters} and {k}")
        self.k = k
        self.keys = np.full((num_filters, k), EMPTY, dtype=np.uint64)  # per filter, unsorted
        self.seen = 0

    @property
    def num_filters(self) -> int:
        return self.keys.shape[0]

    def update(self, values, ids) -> "TopK":
        """Adds rows ``values[B, F]`` (compared as float32, the artifacts' dtype) of samples ``ids[B]``."""
        values = np.asarray(values, dtype=np.float32)
        ids = np.asarray(ids)
        if values.ndim != 2 or values.shape[1] != self.num_filters:
            raise ValueError(f"expected values of shape [rows, {self.num_filters}], got {values.shape}")
        if ids.shape != (values.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"expected {values.shape[0]} integer ids, got shape {ids.shape} of {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= ID_LIMIT):
            raise ValueError(f"sample ids must lie in [0, {ID_LIMIT})")
        if np.isnan(values).any():
            raise ValueError("values contain NaN; a NaN has no rank")
        if values.size:
            # A row can enter only where it reaches the current k-th value (ties may still win on the id).
            rows, cols = np.nonzero(values >= self._threshold())
            if rows.size > DENSE_FRACTION * values.size:
                self._merge_dense(order_keys(values.T, ids[None, :]))
            elif rows.size:
                self._merge_sparse(cols, order_keys(values[rows, cols], ids[rows]))
        self.seen += values.shape[0]
        return self

    def merge(self, other: "TopK") -> "TopK":
        """Folds in ``other`` (the top K of disjoint samples), in place; returns ``self``."""
        if other.keys.shape != self.keys.shape:
            raise ValueError(f"cannot merge top-K tables of shapes {other.keys.shape} and {self.keys.shape}")
        self._merge_dense(other.keys)
        self.seen += other.seen
        return self

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 [F, n], values float32 [F, n])``, best first, ``n = min(k, rows seen)``."""
        n = min(self.k, self.seen)
        best = np.sort(self.keys, axis=1)[:, ::-1][:, :n]
        values, ids = decode_keys(best)
        return ids, values

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (a shard file, a rank's share)."""
        return {"keys": self.keys, "seen": np.asarray(self.seen, dtype=np.int64)}

    @classmethod
    def from_state_dict(cls, state) -> "TopK":
        keys = np.asarray(state["keys"], dtype=np.uint64)
        top = cls(keys.shape[0], keys.shape[1])
        top.keys = keys.copy()
        top.seen = int(state["seen"])
        return top

    def _threshold(self) -> np.ndarray:
        """Per filter, the value of its k-th best key; -inf while it has an empty slot."""
        worst = self.keys.min(axis=1)
        values, _ = decode_keys(worst)
        return np.where(worst == EMPTY, np.float32(-np.inf), values)

    def _merge_dense(self, keys: np.ndarray) -> None:
        """``keys[F, m]``: the per-filter top k of the union, by one partition."""
        combined = np.concatenate([self.keys, keys], axis=1)
        self.keys = np.partition(combined, keys.shape[1], axis=1)[:, keys.shape[1] :]

    def _merge_sparse(self, cols: np.ndarray, keys: np.ndarray) -> None:
        """Candidate ``keys`` of filters ``cols``: only the touched filters are re-ranked."""
        touched, slot = np.unique(cols, return_inverse=True)
        labels = np.concatenate([np.repeat(np.arange(touched.size), self.k), slot])
        pool = np.concatenate([self.keys[touched].ravel(), keys])
        order = np.lexsort((~pool, labels))  # by filter, then best key first
        starts = np.searchsorted(labels[order], np.arange(touched.size))
        self.keys[touched] = pool[order[starts[:, None] + np.arange(self.k)]]


# ----------------------------------------------------------------------------------- activations
def channel_maxima(model: nn.Module, images: torch.Tensor, layout: FilterLayout | None = None) -> np.ndarray:
    """float32 ``[B, F]``: per sample, the largest value of each filter's output channel over all positions.

    One no-grad forward pass in eval mode with the engine's ``channel_max_hooks`` (the precompute job takes
    the same maxima inside ``profile_batch``'s pass instead); a layer that does not run in eval mode (e.g. an
    auxiliary head) gives -inf. The model's flags are restored.
    """
    layout = layout or FilterLayout.from_model(model)
    device, dtype = model_device_dtype(model)
    maxima = torch.full((images.shape[0], layout.num_filters), -torch.inf, device=device, dtype=torch.float32)
    with HookSet(channel_max_hooks(model, layout, maxima)), eval_mode(model), torch.no_grad():
        model(images.to(device=device, dtype=dtype))
    return maxima.cpu().numpy()
