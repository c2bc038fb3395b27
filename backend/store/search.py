"""Cosine nearest-neighbour search: FAISS indexes over L2-normalized rows, and the exact numpy path.

Cosine similarity is the inner product of L2-normalized vectors, so every FAISS index here uses
``METRIC_INNER_PRODUCT`` over normalized rows. ``flat`` is exact; ``sq8`` (8-bit scalar quantization, 4x less
memory) and ``ivf`` (inverted lists, a fraction of the data scanned per query) and ``ivfpq`` (inverted lists of
product-quantized codes, about dim / 32 bytes a row, for millions of rows) are approximate, and their
recall@10 against exact search is measured when they are built.

Exact search over a range of dimensions uses ``X[:, a:b] @ q[a:b]`` (a strided BLAS gemv that reads only
those columns) divided by row norms taken from per-row prefix sums of squares at layer boundaries, so no
index is needed per layer range. The scan is memory-bandwidth bound; ``exact.py`` reads about an eighth of
the bytes, with the same answers; see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

INDEX_KINDS = ("flat", "sq8", "ivf", "ivfpq")
_CHUNK_BYTES = 1 << 27  # rows are streamed from the (memory-mapped) matrix in chunks of about this size
_UPCAST_BYTES = 1 << 25  # float32 block of a 16-bit matrix per scan step (smaller blocks: BLAS calls dominate)
_BLAS_MIN = 1 << 22  # values: smaller products use einsum (a threaded BLAS call costs more there on a busy machine)
_TRAIN_BYTES = 1 << 30  # training sample cap (sq8 learns per-dimension ranges; ivf needs 39 rows per list)

log = logging.getLogger(__name__)


def normalize_rows(x: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """float32 ``x`` with unit L2 rows (a copy unless ``copy=False`` and ``x`` is already float32);
    all-zero rows stay zero (cosine 0 with everything)."""
    x = np.array(x, dtype=np.float32, copy=True) if copy else np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ids and scores of the ``k`` largest ``scores`` (only where ``allowed``), best first, ties by lower id."""
    scores = np.asarray(scores)
    candidates = np.flatnonzero(allowed) if allowed is not None else np.arange(scores.shape[0])
    k = min(k, candidates.shape[0])
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=scores.dtype)
    values = scores[candidates]
    if k < candidates.shape[0]:
        # Keep every candidate tied with the k-th best so the tie-break by id below is deterministic.
        kth = np.partition(values, candidates.shape[0] - k)[candidates.shape[0] - k]
        keep = values >= kth
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))[:k]
    return candidates[order].astype(np.int64), values[order]


def range_cosine(
    matrix: np.ndarray, prefix_sq: np.ndarray, query: np.ndarray, bounds: tuple[int, int], norm_cols: tuple[int, int]
) -> np.ndarray:
    """Cosine of every row of ``matrix[:, a:b]`` with ``query[a:b]``.

    ``prefix_sq[:, j]`` is the sum of squares of a row over the dimensions before boundary ``j``;
    ``norm_cols = (i, j)`` are the boundaries of ``bounds = (a, b)``. Zero-norm sides give cosine 0.
    """
    a, b = bounds
    q = np.ascontiguousarray(query[a:b], dtype=np.float32)
    q64 = q.astype(np.float64)
    q_norm = float(np.sqrt(np.sum(q64 * q64)))
    if isinstance(matrix, np.ndarray) and matrix.dtype == np.float32:
        columns = matrix[:, a:b]
        dots = np.asarray(columns @ q) if columns.size >= _BLAS_MIN else np.einsum("nf,f->n", columns, q)
    else:  # 16-bit storage (storage.StoredRows): upcast a block of rows at a time, never the whole matrix
        dots = np.concatenate([block @ q for block in matrix.column_blocks(a, b, _UPCAST_BYTES)])
    row_sq = prefix_sq[:, norm_cols[1]] - prefix_sq[:, norm_cols[0]]
    denom = np.sqrt(np.maximum(row_sq, 0.0)) * q_norm
    out = np.zeros(dots.shape[0], dtype=np.float64)
    np.divide(dots, denom, out=out, where=denom > 0)
    return out


def prefix_squares(matrix: np.ndarray, boundaries: list[int]) -> np.ndarray:
    """``[N, len(boundaries)]`` float64: each row's sum of squares over dimensions ``[0, boundary)``.

    ``boundaries`` are the layer starts followed by the profile length: 0 first, strictly increasing.
    """
    boundaries = [int(b) for b in boundaries]
    if boundaries[0] != 0 or boundaries[-1] != matrix.shape[1] or any(a >= b for a, b in zip(boundaries, boundaries[1:])):
        raise ValueError(f"boundaries must run strictly upwards from 0 to {matrix.shape[1]}")
    out = np.zeros((matrix.shape[0], len(boundaries)), dtype=np.float64)
    rows = chunk_rows(matrix.shape[1], itemsize=8)
    for start in range(0, matrix.shape[0], rows):
        block = np.asarray(matrix[start : start + rows], dtype=np.float64)
        per_layer = np.add.reduceat(block * block, boundaries[:-1], axis=1)
        out[start : start + block.shape[0], 1:] = np.cumsum(per_layer, axis=1)
    return out


def chunk_rows(dim: int, itemsize: int = 4) -> int:
    return max(1, _CHUNK_BYTES // (dim * itemsize))


def build_index(kind: str, matrix: np.ndarray, *, seed: int = 0):
    """A FAISS cosine index of ``kind`` over the rows of ``matrix`` (read in chunks; a memmap is fine)."""
    import faiss

    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    n, dim = matrix.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "sq8":
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    else:
        nlist = ivf_nlist(n)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:  # 8-bit codes of pq_bytes(dim) sub-vectors: a row in about dim / 32 bytes
            bits = max(1, min(8, int(math.log2(max(n // 39, 1)))))  # 256 centroids need 39 x 256 training rows
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_bytes(dim), bits, faiss.METRIC_INNER_PRODUCT)
            index.pq.cp.seed = seed
        index.cp.seed = seed
        index.nprobe = max(1, math.ceil(nlist / 8))
    if not index.is_trained:
        wanted = max(_TRAIN_BYTES // (4 * dim), 39 * nlist if kind != "sq8" else 0, 39 * 256 if kind == "ivfpq" else 0)
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, wanted), replace=False))
        index.train(normalize_rows(matrix[rows], copy=False))  # fancy indexing already copied
    rows = chunk_rows(dim)
    for start in range(0, n, rows):
        index.add(normalize_rows(matrix[start : start + rows]))
    return index


def ivf_nlist(n: int) -> int:
    """About ``4 sqrt(N)`` lists, but at least 39 training points per list (FAISS' k-means minimum)."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def pq_bytes(dim: int) -> int:
    """Sub-vectors per row for IVF-PQ: the divisor of ``dim`` nearest ``dim / 32`` (FAISS needs a divisor)."""
    return min((m for m in range(1, dim + 1) if dim % m == 0), key=lambda m: (abs(m - dim / 32), m))


def index_params(index) -> dict:
    """Search parameters worth recording in the manifest."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return {}
    pq = getattr(faiss.downcast_index(ivf), "pq", None)
    return {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe), **({"pq_bytes": int(pq.M), "pq_bits": int(pq.nbits)}
                                                                  if pq is not None else {})}


def faiss_search(index, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of a normalized ``query`` among ``allowed`` ids (bool mask, None = all), best first."""
    import faiss

    query = normalize_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))
    params = None
    if allowed is not None:
        bits = np.packbits(allowed.astype(np.uint8), bitorder="little")
        selector = faiss.IDSelectorBitmap(allowed.shape[0], faiss.swig_ptr(bits))
        ivf = faiss.try_extract_index_ivf(index)
        params = (
            faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe) if ivf is not None
            else faiss.SearchParameters(sel=selector)
        )
    k = min(k, index.ntotal if allowed is None else int(allowed.sum()))
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    scores, ids = index.search(query, k, params=params)
    keep = ids[0] >= 0
    return ids[0][keep].astype(np.int64), scores[0][keep]


def exact_neighbors_of_rows(matrix: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """``[Q, k]`` exact cosine neighbours of rows ``query_ids`` of ``matrix``, each query itself excluded."""
    queries = normalize_rows(matrix[query_ids])
    scores = np.empty((len(query_ids), matrix.shape[0]), dtype=np.float32)
    rows = chunk_rows(matrix.shape[1])
    for start in range(0, matrix.shape[0], rows):
        block = normalize_rows(matrix[start : start + rows])
        scores[:, start : start + block.shape[0]] = queries @ block.T
    scores[np.arange(len(query_ids)), query_ids] = -np.inf
    return np.stack([top_k(row, k)[0] for row in scores])


def measure_recall(index, matrix: np.ndarray, *, k: int = 10, num_queries: int = 200, seed: int = 0) -> dict:
    """recall@k of ``index`` against exact cosine search, on random rows of ``matrix`` as queries (self excluded)."""
    n = matrix.shape[0]
    query_ids = np.sort(np.random.default_rng(seed).choice(n, size=min(num_queries, n), replace=False))
    k = min(k, n - 1)
    if k < 1:
        return {"k": k, "recall": 1.0, "queries": int(len(query_ids))}
    exact = exact_neighbors_of_rows(matrix, query_ids, k)
    _, approx = index.search(normalize_rows(matrix[query_ids]), k + 1)
    hits = 0
    for qid, want, got in zip(query_ids, exact, approx):
        got = [i for i in got if i != qid and i >= 0][:k]
        hits += len(set(want.tolist()) & set(got))
    return {"k": k, "recall": hits / (k * len(query_ids)), "queries": int(len(query_ids))}
