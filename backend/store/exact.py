"""Exact cosine search that reads about a quarter of the bytes of a float32 scan.

The float32 scan of ``profiles_std`` is bound by memory bandwidth (50,000 x 26,560 = 5.3 GB per query). Here
every query first scans an int8 copy of the unit-normalized rows (1 byte per value) and gets, for every row,
an interval that provably holds the row's true cosine; only rows whose upper end reaches the k-th largest
lower end can be in the top k, and only those are read in float32 and scored as the plain scan would.

Row ``i`` is stored as ``u_i = x_i / |x_i| = s_i c_i + e_i`` with int8 codes ``c_i``, a float scale ``s_i`` and
the quantization error ``e_i``, of which only the per-layer prefix sums of ``|e_i|^2`` are kept. For the
dimensions ``R`` of a layer range and a query ``q`` (rounded to bfloat16 ``p`` for the kernel), by
Cauchy-Schwarz on each residual:

    |<u_R, q_R> - s <c_R, p_R>| <= |e_R| |q_R| + |s c_R| |q_R - p_R| + kernel rounding,

and the kernel rounding is at most ``(K 2^-24 / (1 - K 2^-24) + 2^-7) |s c_R| |p_R|`` (float32 sums of exact
products, then one bfloat16 rounding of the result, with margin), with ``|s c_R| <= |u_R| + |e_R|``. The
cosine over ``R`` is ``<u_R, q_R> |x| / (|x_R| |q_R|)``, the norms coming from the stored prefix norms.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .atomic import AtomicNpy, save_npz_atomic
from .search import chunk_rows, range_cosine, top_k

CODES = "search_codes.npy"  # int8 [N, F rounded up to 64]: the quantized unit rows, a cache beside profiles_std
BOUNDS = "search_bounds.npz"  # written last: scale [N], error prefix sums [N, layers + 1], source tag
MIN_BYTES = 1 << 28  # below this a float32 scan is already fast (and mostly in cache): no copy is made
FLOAT32_SCAN_SHARE = 0.6  # narrower layer ranges scan float32 (measured break-even at 50,000 x 26,560: ~0.56)
_MARGIN = 1e-6  # absolute slack for the float32 scan's own rounding, so near-ties are always re-scored
_KERNEL_REL = 2.0**-7  # bfloat16 result roundings (measured <= 2^-8 of |result|, even under cancellation), 2x margin
_COLUMN_MULTIPLE = 64  # the int8 kernel reads past the end of rows whose length is not a multiple of 16

log = logging.getLogger(__name__)


class SearchResult(NamedTuple):
    ids: np.ndarray
    scores: np.ndarray
    bytes_read: int  # bytes of the profile matrix and its side arrays that the query read
    rescored: int  # rows scored in float32


class ExactSearch:
    """Exact layer-range cosine search over ``matrix`` (``[N, F]``), quantized prefilter when it pays off.

    ``prefix_sq`` are the per-row prefix sums of squares at ``boundaries`` (layer starts, then F);
    ``directory`` holds the int8 cache, built on first use and reused while ``tag`` (an identity of the
    matrix's contents) is unchanged. Safe to share between threads.
    """

    def __init__(self, matrix: np.ndarray, prefix_sq: np.ndarray, boundaries: list[int], directory: Path,
                 tag: str, *, min_bytes: int | None = None):
        self.matrix, self.prefix_sq, self.boundaries = matrix, prefix_sq, [int(b) for b in boundaries]
        self.directory, self.tag = Path(directory), tag
        self.use_codes = matrix.nbytes >= (MIN_BYTES if min_bytes is None else min_bytes)
        self._lock = threading.Lock()
        self._codes: QuantizedRows | None = None

    def search(self, query: np.ndarray, k: int, layers: tuple[int, int], allowed: np.ndarray | None) -> SearchResult:
        """Top ``k`` cosine over layers ``start:stop`` among ``allowed`` rows (None = all), best first."""
        start, stop = layers
        a, b = self.boundaries[start], self.boundaries[stop]
        codes = self._quantized() if self.use_codes and (b - a) >= FLOAT32_SCAN_SHARE * self.matrix.shape[1] else None
        if codes is None:
            ids, scores = top_k(range_cosine(self.matrix, self.prefix_sq, query, (a, b), layers), k, allowed)
            return SearchResult(ids, scores, self.matrix.shape[0] * ((b - a) * self.matrix.itemsize + 16),
                                self.matrix.shape[0])
        low, high = codes.cosine_bounds(query, layers, self.boundaries, self.prefix_sq)
        candidates = candidate_rows(low, high, k, allowed)
        rows = self.matrix[candidates, a:b]  # only the range of only these rows is read (as float32)
        picked, best = top_k(range_cosine(rows, self.prefix_sq[candidates], query[a:b], (0, b - a), layers), k)
        side_arrays = 8 * 6  # scale, two error and three prefix-norm columns, float64
        bytes_read = codes.codes.nbytes + self.matrix.shape[0] * side_arrays + rows.size * self.matrix.itemsize
        return SearchResult(candidates[picked], best, bytes_read, len(candidates))

    def prepare(self) -> None:
        """Builds (or checks) the int8 copy now, when this matrix gets one; errors propagate."""
        if self.use_codes:
            with self._lock:
                self._codes = QuantizedRows.load_or_build(self.directory, self.matrix, self.boundaries, self.tag)

    def _quantized(self) -> "QuantizedRows | None":
        with self._lock:
            if self._codes is None and self.use_codes:
                try:
                    self._codes = QuantizedRows.load_or_build(self.directory, self.matrix, self.boundaries, self.tag)
                except OSError as exc:  # e.g. a read-only artifacts dir: exact float32 scans, as before
                    log.warning("no int8 search copy in %s (%s); exact queries scan float32", self.directory, exc)
                    self.use_codes = False
            return self._codes


def candidate_rows(low: np.ndarray, high: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
    """Rows (among ``allowed``) whose upper bound reaches the k-th largest lower bound: a superset of the top k."""
    pool = np.flatnonzero(allowed) if allowed is not None else np.arange(low.shape[0])
    if len(pool) <= k:
        return pool
    kth = np.partition(low[pool], len(pool) - k)[len(pool) - k]
    return pool[high[pool] >= kth]


class QuantizedRows:
    """int8 codes of the unit-normalized rows, per-row scales and per-layer quantization-error norms."""

    def __init__(self, codes: np.ndarray, scale: np.ndarray, error_sq: np.ndarray):
        self.codes, self.scale, self.error_sq = codes, scale, error_sq
        self._weights = torch.from_numpy(codes)  # shares the memory map (opened copy-on-write, never written)
        self._ones = torch.ones(codes.shape[0], dtype=torch.bfloat16)

    @classmethod
    def load_or_build(cls, directory: Path, matrix: np.ndarray, boundaries: list[int], tag: str) -> "QuantizedRows":
        loaded = cls.load(directory, matrix.shape, len(boundaries), tag)
        if loaded is not None:
            return loaded
        log.info("building the int8 search copy of %s rows in %s", f"{matrix.shape[0]:,}", directory)
        with AtomicNpy(directory / CODES, padded_shape(matrix.shape), np.int8) as out:  # zero-filled
            scale, error_sq = quantize_rows(matrix, boundaries, out.array)
        save_npz_atomic(directory / BOUNDS, {"scale": scale, "error_sq": error_sq, "tag": np.array(tag_digest(tag))})
        return cls.load(directory, matrix.shape, len(boundaries), tag)

    @classmethod
    def load(cls, directory: Path, shape: tuple[int, int], num_boundaries: int, tag: str) -> "QuantizedRows | None":
        """The cached copy, or None when it is missing, incomplete or made from other contents."""
        try:
            with np.load(directory / BOUNDS, allow_pickle=False) as saved:
                scale, error_sq, saved_tag = saved["scale"], saved["error_sq"], str(saved["tag"])
            codes = np.load(directory / CODES, mmap_mode="c", allow_pickle=False)
        except (OSError, KeyError, ValueError):
            return None
        if (saved_tag != tag_digest(tag) or codes.shape != padded_shape(shape) or codes.dtype != np.int8
                or scale.shape != (shape[0],) or error_sq.shape != (shape[0], num_boundaries)):
            return None
        return cls(codes, scale, error_sq)

    def cosine_bounds(self, query: np.ndarray, layers: tuple[int, int], boundaries: list[int],
                      prefix_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row ``(low, high)`` that hold each row's cosine with ``query`` over the layer range."""
        start, stop = layers
        a, b = boundaries[start], boundaries[stop]
        q = np.zeros(self.codes.shape[1], dtype=np.float32)
        q[a:b] = query[a:b]
        p = torch.from_numpy(q).to(torch.bfloat16)
        q64, p64 = q[a:b].astype(np.float64), p[a:b].to(torch.float64).numpy()
        q_norm, p_norm, rounding = (float(np.linalg.norm(v)) for v in (q64, p64, q64 - p64))
        approx = self.scale * self._dots(p)
        full_sq, range_sq = prefix_sq[:, -1], np.maximum(prefix_sq[:, stop] - prefix_sq[:, start], 0.0)
        error = np.sqrt(np.maximum(self.error_sq[:, stop] - self.error_sq[:, start], 0.0))
        unit_range = np.sqrt(np.divide(range_sq, full_sq, out=np.zeros_like(full_sq), where=full_sq > 0))
        terms = self.codes.shape[1]
        kernel_rel = terms * 2.0**-24 / (1 - terms * 2.0**-24) + _KERNEL_REL
        slack = error * q_norm + (unit_range + error) * (rounding + kernel_rel * p_norm)
        # cosine = <u_R, q_R> * |x| / (|x_R| |q_R|); rows (or a query) with nothing in the range score 0
        factor = np.zeros_like(full_sq)
        np.divide(np.sqrt(full_sq), np.sqrt(range_sq) * q_norm, out=factor, where=(range_sq > 0) & (q_norm > 0))
        return (approx - slack) * factor - _MARGIN, (approx + slack) * factor + _MARGIN

    def _dots(self, p: torch.Tensor) -> np.ndarray:
        """``codes @ p`` as float64: float32 sums of exact products, one bfloat16 rounding of each result."""
        return torch.ops.aten._weight_int8pack_mm(p[None], self._weights, self._ones)[0].to(torch.float64).numpy()


def quantize_rows(matrix: np.ndarray, boundaries: list[int], codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fills ``codes`` with int8 codes of the unit rows of ``matrix``; returns the float64 scales and the
    per-row prefix sums (at ``boundaries``) of the squared quantization error, all in float64."""
    n = matrix.shape[0]
    scale = np.zeros(n, dtype=np.float64)
    error_sq = np.zeros((n, len(boundaries)), dtype=np.float64)
    rows = chunk_rows(matrix.shape[1], itemsize=8)
    for start in range(0, n, rows):
        unit = np.array(matrix[start : start + rows], dtype=np.float64)  # a copy, normalized in place
        norms = np.linalg.norm(unit, axis=1, keepdims=True)
        np.divide(unit, norms, out=unit, where=norms > 0)
        step = np.abs(unit).max(axis=1, keepdims=True) / 127
        block_codes = np.zeros(unit.shape, dtype=np.float64)
        np.divide(unit, step, out=block_codes, where=step > 0)
        block_codes = np.clip(np.rint(block_codes), -127, 127)
        error = unit - block_codes * step
        stop = start + unit.shape[0]
        codes[start:stop, : unit.shape[1]] = block_codes.astype(np.int8)
        scale[start:stop] = step[:, 0]
        error_sq[start:stop, 1:] = np.cumsum(np.add.reduceat(error * error, boundaries[:-1], axis=1), axis=1)
    return scale, error_sq


def padded_shape(shape: tuple[int, int]) -> tuple[int, int]:
    return shape[0], -(-shape[1] // _COLUMN_MULTIPLE) * _COLUMN_MULTIPLE


def tag_digest(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()
