"""Exact cosine search that reads about an eighth of the bytes of a float32 scan.

The float32 scan of ``profiles_std`` is bound by memory bandwidth (50,000 x 26,560 = 5.3 GB per query). Here
each row gets a compact copy and every query an interval per row that provably holds the row's true cosine;
only rows whose upper end reaches the k-th largest lower end can be in the top k. Three stages, each on the
rows the previous one kept: half a byte per value for every row, another half byte for the survivors, then
float32 for the last few, scored exactly as the plain scan scores them.

The copy. Row ``x`` has the unit vector ``u = x / |x| = V a + r``: ``V`` (``[F, d]``) spans the top principal
directions of a sample of unit rows (real profiles share most of their energy there; any ``V`` keeps the
search exact), ``a`` are the row's ``d`` float32 coefficients and ``r`` the residual, quantized to integer
codes ``c = 16 h + l`` (``|c| <= 119``, ``h`` in -7..7, ``l`` in -8..7) with a per-row step ``s``:
``r = 16 s h + e4 = s c + e8``. ``h`` and ``l`` are two planes of 4-bit codes; per row the prefix sums over
the layers of ``|e4|^2`` and ``|e8|^2`` are kept.

The bounds. For a query ``q`` restricted to the layer range ``R`` (zero elsewhere), written for the integer
kernel as ``q_R = t (p1 + p2 / 254) + rho`` with int8 ``p1, p2`` (``|rho_j| <= t / 508``):

    <u, q_R> = <a, V^T q_R> + s t <c, p1 + p2 / 254> + s <c, rho> + <e8_R, q_R>,

with ``|s <c, rho>| <= 119 s |rho|_1`` (Hoelder) and ``|<e8_R, q_R>| <= |e8_R| |q_R|`` (Cauchy-Schwarz). The
first stage uses ``16 h`` and ``e4`` in place of ``c`` and ``e8`` (``|16 h| <= 112``) and ``p1`` alone (its
rounding ``q_R - t p1`` in place of ``rho``: half the kernel's work, where every row is read). Integer dot
products are exact, the rest is float64. The cosine over ``R`` is ``<u, q_R> |x| / (|x_R| |q_R|)``, the norms coming
from the stored prefix norms, so layer ranges read only their own columns.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import native
from .atomic import AtomicNpy, save_npz_atomic
from .search import chunk_rows, range_cosine, top_k

CODES = "search_codes.npy"  # uint8 [2, N, W]: coarse and fine 4-bit planes of the residual codes, beside profiles_std
BOUNDS = "search_bounds.npz"  # written last: basis, coefficients, steps, error prefix sums, source tag
MIN_BYTES = 1 << 28  # below this a float32 scan is already fast (and mostly in cache): no copy is made
FLOAT32_SCAN_DIMS = 512  # narrower ranges of float32 rows scan float32 (per-query overhead; docs/benchmarks.md)
BASIS_DIMS = 32  # principal directions kept per row as float32 coefficients
BASIS_SAMPLE = 512  # rows the directions are computed from
_FORMAT = "pca32-nibbles-v1"  # part of the cache tag: copies of another layout are rebuilt
_MARGIN = 1e-6  # absolute slack for the float32 scan's own rounding, so near-ties are always re-scored
_LEVELS = 119  # |c| <= 119 keeps h = (c + 8) >> 4 within -7..7 and l = c - 16 h within -8..7
_COARSE_MAX = 112  # |16 h|
_FINE = 254  # q ~ t (p1 + p2 / 254)
_DIMS_PER_BLOCK = 128  # a 64-byte block of a plane holds 128 codes
_MAX_DIMS = 1 << 20  # int32 sums in the kernel are exact up to here

log = logging.getLogger(__name__)


class SearchResult(NamedTuple):
    ids: np.ndarray
    scores: np.ndarray
    bytes_read: int  # bytes of the profile matrix, its copy and their side arrays that the query read
    rescored: int  # rows scored in float32


class ExactSearch:
    """Exact layer-range cosine search over ``matrix`` (``[N, F]``), through the compact copy when it pays off.

    ``prefix_sq`` are the per-row prefix sums of squares at ``boundaries`` (layer starts, then F);
    ``directory`` holds the copy, built on first use and reused while ``tag`` (an identity of the matrix's
    contents) is unchanged. Safe to share between threads.
    """

    def __init__(self, matrix: np.ndarray, prefix_sq: np.ndarray, boundaries: list[int], directory: Path,
                 tag: str, *, min_bytes: int | None = None):
        self.matrix, self.prefix_sq, self.boundaries = matrix, prefix_sq, [int(b) for b in boundaries]
        self.directory, self.tag = Path(directory), f"{_FORMAT}:{tag}"
        self.use_codes = (matrix.nbytes >= (MIN_BYTES if min_bytes is None else min_bytes)
                          and matrix.shape[1] <= _MAX_DIMS)
        self._lock = threading.Lock()
        self._codes: ResidualCodes | None = None

    def search(self, query: np.ndarray, k: int, layers: tuple[int, int], allowed: np.ndarray | None) -> SearchResult:
        """Top ``k`` cosine over layers ``start:stop`` among ``allowed`` rows (None = all), best first."""
        start, stop = layers
        a, b = self.boundaries[start], self.boundaries[stop]
        narrow = b - a < FLOAT32_SCAN_DIMS and self.matrix.itemsize == 4  # 16-bit columns always take the codes
        codes = None if narrow else self._quantized()
        if codes is None:
            ids, scores = top_k(range_cosine(self.matrix, self.prefix_sq, query, (a, b), layers), k, allowed)
            return SearchResult(ids, scores, self.matrix.shape[0] * ((b - a) * self.matrix.itemsize + 16),
                                self.matrix.shape[0])
        candidates, bytes_read = codes.candidates(query, k, layers, self.boundaries, self.prefix_sq, allowed)
        rows = self.matrix[candidates, a:b]  # only the range of only these rows is read (as float32)
        picked, best = top_k(range_cosine(rows, self.prefix_sq[candidates], query[a:b], (0, b - a), layers), k)
        return SearchResult(candidates[picked], best, bytes_read + rows.shape[0] * (b - a) * self.matrix.itemsize,
                            len(candidates))

    def prepare(self) -> None:
        """Builds (or checks) the copy now, when this matrix gets one; errors propagate."""
        if self.use_codes:
            with self._lock:
                self._codes = ResidualCodes.load_or_build(self.directory, self.matrix, self.boundaries, self.tag)

    def _quantized(self) -> "ResidualCodes | None":
        with self._lock:
            if self.use_codes and not native.available():  # no C compiler here: the plain scan (exact, slower)
                self.use_codes = False
            if self._codes is None and self.use_codes:
                try:
                    self._codes = ResidualCodes.load_or_build(self.directory, self.matrix, self.boundaries, self.tag)
                except OSError as exc:  # e.g. a read-only artifacts dir: exact float32 scans, as before
                    log.warning("no search copy in %s (%s); exact queries scan float32", self.directory, exc)
                    self.use_codes = False
            return self._codes if self.use_codes else None


def candidate_rows(low: np.ndarray, high: np.ndarray, k: int, pool: np.ndarray) -> np.ndarray:
    """Rows of ``pool`` (whose bounds ``low``/``high`` are) whose upper bound reaches the k-th largest lower
    bound: a superset of the top k."""
    if len(pool) <= k:
        return pool
    kth = np.partition(low, len(pool) - k)[len(pool) - k]
    return pool[high >= kth]


class QueryCode(NamedTuple):
    """A query restricted to a layer range, in the form the bounds need (see the module docstring)."""

    integers: np.ndarray  # int8 [2, 2 W]: p1 and p2, zero outside the range
    step: float  # t
    sums: np.ndarray  # [2] sums of p1 and p2 (for the codes' offset of 8)
    coarse_rounding_l1: float  # |q_R - t p1|_1
    rounding_l1: float  # |rho|_1
    norm: float  # |q_R|
    blocks: tuple[int, int]  # the 64-byte blocks of a plane that hold the range


def encode_query(query: np.ndarray, a: int, b: int, width: int) -> QueryCode:
    q = np.zeros(2 * width, dtype=np.float64)
    q[a:b] = query[a:b]
    largest = float(np.abs(q).max())
    step = largest / 127 if largest > 0 else 1.0
    scaled = q / step
    coarse = np.rint(scaled)
    fine = np.rint((scaled - coarse) * _FINE)
    rounding = q - step * (coarse + fine / _FINE)
    integers = np.stack([coarse, fine]).astype(np.int8)
    return QueryCode(integers, step, integers.sum(axis=1, dtype=np.int64), float(np.abs(q - step * coarse).sum()),
                     float(np.abs(rounding).sum()), float(np.sqrt(np.sum(q * q))),
                     (a // _DIMS_PER_BLOCK, -(-b // _DIMS_PER_BLOCK)))


class ResidualCodes:
    """The compact copy: basis, coefficients, residual code planes, steps and per-layer error prefix sums."""

    def __init__(self, planes: np.ndarray, basis: np.ndarray, coeffs: np.ndarray, scale: np.ndarray,
                 error_sq: np.ndarray):
        self.planes, self.basis, self.scale, self.error_sq = planes, basis, scale, error_sq
        self.coeffs = coeffs.astype(np.float64)  # [N, d]: the float32 values, exactly

    @classmethod
    def load_or_build(cls, directory: Path, matrix: np.ndarray, boundaries: list[int], tag: str) -> "ResidualCodes":
        loaded = cls.load(directory, matrix.shape, len(boundaries), tag)
        if loaded is not None:
            return loaded
        log.info("building the search copy of %s rows in %s", f"{matrix.shape[0]:,}", directory)
        basis = principal_directions(matrix)
        with AtomicNpy(directory / CODES, (2, *padded_shape(matrix.shape)), np.uint8) as out:
            coeffs, scale, error_sq = quantize_rows(matrix, boundaries, basis, out.array)
        save_npz_atomic(directory / BOUNDS, {"basis": basis, "coeffs": coeffs, "scale": scale, "error_sq": error_sq,
                                             "tag": np.array(tag_digest(tag))})
        return cls.load(directory, matrix.shape, len(boundaries), tag)

    @classmethod
    def load(cls, directory: Path, shape: tuple[int, int], num_boundaries: int, tag: str) -> "ResidualCodes | None":
        """The cached copy, or None when it is missing, incomplete or made from other contents."""
        try:
            with np.load(directory / BOUNDS, allow_pickle=False) as saved:
                arrays = [saved[name] for name in ("basis", "coeffs", "scale", "error_sq")]
                saved_tag = str(saved["tag"])
            planes = np.load(directory / CODES, mmap_mode="r", allow_pickle=False)
        except (OSError, KeyError, ValueError):
            return None
        basis, coeffs, scale, error_sq = arrays
        d = basis.shape[1] if basis.ndim == 2 else -1
        if (saved_tag != tag_digest(tag) or planes.shape != (2, *padded_shape(shape)) or planes.dtype != np.uint8
                or basis.shape != (shape[1], d) or coeffs.shape != (shape[0], d) or scale.shape != (shape[0],)
                or error_sq.shape != (2, num_boundaries, shape[0])):
            return None
        return cls(planes, basis, coeffs, scale, error_sq)

    def candidates(self, query: np.ndarray, k: int, layers: tuple[int, int], boundaries: list[int],
                   prefix_sq: np.ndarray, allowed: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Rows (among ``allowed``) that can be in the top ``k`` over the layer range, by the two code stages;
        and the bytes read."""
        pool = np.flatnonzero(allowed) if allowed is not None else np.arange(self.planes.shape[1])
        if len(pool) <= k:
            return pool, 0
        bounds = self.query_bounds(query, layers, boundaries, prefix_sq)
        block_bytes = 64 * (bounds.code.blocks[1] - bounds.code.blocks[0])
        side_bytes = 8 * (self.coeffs.shape[1] + 1 + 2 + 3)  # coefficients, step, two error and three norm columns
        low, high = bounds.coarse(None if allowed is None else pool)  # every row of the pool
        rows = candidate_rows(low, high, k, pool)
        low, high = bounds.fine(rows)  # the survivors: both planes
        return candidate_rows(low, high, k, rows), len(pool) * (block_bytes + side_bytes) + 2 * len(rows) * block_bytes

    def query_bounds(self, query: np.ndarray, layers: tuple[int, int], boundaries: list[int],
                     prefix_sq: np.ndarray) -> "QueryBounds":
        return QueryBounds(self, query, layers, boundaries, prefix_sq)


class QueryBounds:
    """One query's per-row cosine bounds over a layer range, from the coarse codes or the full codes."""

    def __init__(self, codes: ResidualCodes, query: np.ndarray, layers: tuple[int, int], boundaries: list[int],
                 prefix_sq: np.ndarray):
        start, stop = layers
        a, b = boundaries[start], boundaries[stop]
        self.codes, self.layers = codes, layers
        self.code = encode_query(query, a, b, codes.planes.shape[2])
        # <a, V^T q_R>, by einsum: small products, where a threaded BLAS call costs more than it saves
        basis_side = np.einsum("fd,f->d", codes.basis[a:b], query[a:b].astype(np.float64))
        self.projected = np.einsum("nd,d->n", codes.coeffs, basis_side)
        full_sq, range_sq = prefix_sq[:, -1], np.maximum(prefix_sq[:, stop] - prefix_sq[:, start], 0.0)
        self.factor = np.zeros_like(full_sq)  # cosine = <u, q_R> |x| / (|x_R| |q_R|); empty sides score 0
        np.divide(np.sqrt(full_sq), np.sqrt(range_sq) * self.code.norm, out=self.factor,
                  where=(range_sq > 0) & (self.code.norm > 0))

    def coarse(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of ``rows`` (None = all) from the coarse plane ``16 h`` and ``p1``."""
        dots = self._dots(0, rows, 1)[0]
        return self._interval(16 * dots, _COARSE_MAX, 0, rows, self.code.coarse_rounding_l1)

    def fine(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of ``rows`` from the full codes ``c = 16 h + l`` and ``p1 + p2 / 254``."""
        (h1, h2), (l1, l2) = self._dots(0, rows, 2), self._dots(1, rows, 2)
        dots = 16 * h1 + l1 + (16 * h2 + l2) / _FINE  # exact integers until this one division
        return self._interval(dots, _LEVELS, 1, rows, self.code.rounding_l1)

    def _dots(self, plane: int, rows: np.ndarray | None, parts: int) -> np.ndarray:
        """``[parts, rows]`` int64: ``<codes, p1>`` (and ``<codes, p2>``) of the plane's codes (nibble - 8)."""
        planes = self.codes.planes
        out = np.empty((parts, planes.shape[1] if rows is None else len(rows)), dtype=np.int32)
        native.nibble_dots(planes[plane], rows, self.code.blocks, self.code.integers[:parts], out)
        return out.astype(np.int64) - 8 * self.code.sums[:parts, None]

    def _interval(self, dots: np.ndarray, code_max: int, stage: int, rows: np.ndarray | None, rounding_l1: float):
        start, stop = self.layers
        take = slice(None) if rows is None else rows
        scale, error_sq = self.codes.scale[take], self.codes.error_sq[stage]
        error = np.sqrt(np.maximum(error_sq[stop, take] - error_sq[start, take], 0.0))
        estimate = self.projected[take] + scale * self.code.step * dots
        slack = error * self.code.norm + code_max * scale * rounding_l1
        factor = self.factor[take]
        return (estimate - slack) * factor - _MARGIN, (estimate + slack) * factor + _MARGIN


def principal_directions(matrix: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """``[F, d]`` float64: the top principal directions (uncentred) of a sample of unit rows, unit columns.
    Only the bounds' tightness depends on them, never the answers."""
    n = matrix.shape[0]
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, BASIS_SAMPLE), replace=False))
    unit = np.array(matrix[sample], dtype=np.float32)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    np.divide(unit, norms, out=unit, where=norms > 0)
    values, vectors = np.linalg.eigh((unit @ unit.T).astype(np.float64))
    keep = np.argsort(values)[::-1][:BASIS_DIMS]
    keep = keep[values[keep] > 1e-6 * max(float(values.max(initial=0.0)), 1e-30)]
    basis = unit.T.astype(np.float64) @ vectors[:, keep]
    return basis / np.linalg.norm(basis, axis=0, keepdims=True)


def quantize_rows(matrix: np.ndarray, boundaries: list[int], basis: np.ndarray, planes: np.ndarray):
    """Fills ``planes`` (uint8 ``[2, N, W]``) with the residual codes of the unit rows of ``matrix``; returns
    the float32 coefficients ``[N, d]``, the steps ``[N]`` and the error prefix sums ``[2, layers + 1, N]``."""
    n, f = matrix.shape
    coeffs = np.zeros((n, basis.shape[1]), dtype=np.float32)
    scale = np.zeros(n, dtype=np.float64)
    error_sq = np.zeros((2, len(boundaries), n), dtype=np.float64)
    rows = chunk_rows(f, itemsize=32)
    for start in range(0, n, rows):
        unit = np.array(matrix[start : start + rows], dtype=np.float64)  # a copy, normalized in place
        stop = start + unit.shape[0]
        norms = np.linalg.norm(unit, axis=1, keepdims=True)
        np.divide(unit, norms, out=unit, where=norms > 0)
        coeffs[start:stop] = unit @ basis
        residual = unit - coeffs[start:stop].astype(np.float64) @ basis.T
        step = np.abs(residual).max(axis=1, keepdims=True) / _LEVELS
        codes = np.zeros(residual.shape, dtype=np.float64)
        np.divide(residual, step, out=codes, where=step > 0)
        codes = np.clip(np.rint(codes), -_LEVELS, _LEVELS).astype(np.int16)
        coarse = (codes + 8) >> 4
        fine = codes - 16 * coarse
        scale[start:stop] = step[:, 0]
        for stage, error in enumerate((residual - (16 * step) * coarse, residual - step * codes)):
            per_layer = np.add.reduceat(error * error, boundaries[:-1], axis=1)
            error_sq[stage, 1:, start:stop] = np.cumsum(per_layer, axis=1).T
        for plane, values in enumerate((coarse, fine)):
            planes[plane, start:stop] = pack_nibbles(values + 8, planes.shape[2])
    return coeffs, scale, error_sq


def pack_nibbles(values: np.ndarray, width: int) -> np.ndarray:
    """``[rows, F]`` values in 0..15 -> ``[rows, width]`` bytes in the kernel's layout (nibble_dots.c); the
    padding holds 8 (code 0)."""
    padded = np.full((values.shape[0], 2 * width), 8, dtype=np.uint8)
    padded[:, : values.shape[1]] = values
    blocks = padded.reshape(values.shape[0], -1, 2, 64)
    return (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).reshape(values.shape[0], width)


def padded_shape(shape: tuple[int, int]) -> tuple[int, int]:
    return shape[0], -(-shape[1] // _DIMS_PER_BLOCK) * 64


def tag_digest(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()
