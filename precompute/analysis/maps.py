"""2-D maps of the mistakes, in saliency space (standardized profiles) and in feature space.

Both spaces use cosine geometry, as the neighbour search does: rows are L2-normalized, then reduced to
``PCA_DIMS`` dimensions with randomized PCA (the standard step before t-SNE: it keeps the large-scale
distances, removes most noise and makes the neighbour search cheap), then embedded with openTSNE (PCA
initialization, seeded). Sets too small for the perplexity fall back to the first two
principal components; the returned params say which method ran, so they can go into the manifest.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

PCA_DIMS = 50
PERPLEXITY = 30.0
CHUNK_ROWS = 4096
# Barnes-Hut is faster below this many points, the FFT interpolation above (openTSNE's own advice).
FFT_FROM = 10_000


def normalize_rows(rows) -> np.ndarray:
    """A float32 copy of ``rows`` with unit L2 norm per row (all-zero rows stay zero), built chunk by chunk
    so a memory-mapped input is never copied in float64."""
    rows = np.asarray(rows)  # a view of a memmap, nothing read yet
    out = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        chunk = np.asarray(rows[start : start + CHUNK_ROWS], dtype=np.float32)
        norms = np.linalg.norm(chunk, axis=1, keepdims=True)
        np.divide(chunk, np.where(norms > 0, norms, 1.0), out=out[start : start + CHUNK_ROWS])
    return out


def reduce_rows(rows, dims: int = PCA_DIMS, seed: int = 0) -> tuple[np.ndarray, dict]:
    """``(points float32 [n, d], params)``: L2-normalized rows projected on their top ``d <= dims`` principal
    components (randomized PCA, seeded); ``d`` is smaller when there are fewer rows or columns."""
    from sklearn.decomposition import PCA

    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ValueError(f"expected a [rows, dims] array, got shape {rows.shape}")
    n, width = rows.shape
    d = min(dims, n - 1, width)  # n points span at most n - 1 dimensions around their mean
    params = {"normalize": "l2", "pca_dims": max(d, 0), "pca_solver": "randomized", "seed": seed}
    if d < 1:
        return np.zeros((n, 0), dtype=np.float32), {**params, "pca_explained_variance": 0.0}
    pca = PCA(n_components=d, svd_solver="randomized", random_state=seed, copy=False)
    points = pca.fit_transform(normalize_rows(rows)).astype(np.float32, copy=False)
    return points, {**params, "pca_explained_variance": float(pca.explained_variance_ratio_.sum())}


def embed(points: np.ndarray, *, seed: int = 0, perplexity: float = PERPLEXITY, n_jobs: int = 1) -> tuple[np.ndarray, dict]:
    """``(coords float32 [n, 2], params)`` of points from ``reduce_rows``: openTSNE when there are more than
    ``3 * perplexity`` points, else the first two principal components (zeros where there are fewer)."""
    n = points.shape[0]
    if n <= 3 * perplexity:
        coords = np.zeros((n, 2), dtype=np.float32)
        coords[:, : min(2, points.shape[1])] = points[:, :2]
        return coords, {"method": "pca", "reason": f"{n} points: t-SNE needs more than 3 x perplexity ({3 * perplexity:g})"}
    from openTSNE import TSNE

    gradient = "fft" if n >= FFT_FROM else "bh"
    tsne = TSNE(
        n_components=2, perplexity=perplexity, metric="euclidean", initialization="pca",
        negative_gradient_method=gradient, random_state=seed, n_jobs=n_jobs,
    )
    coords = np.asarray(tsne.fit(np.ascontiguousarray(points, dtype=np.float64)), dtype=np.float32)
    return coords, {
        "method": "tsne", "library": f"openTSNE {importlib.metadata.version('openTSNE')}", "perplexity": perplexity,
        "early_exaggeration_iter": tsne.early_exaggeration_iter, "n_iter": tsne.n_iter,
        "initialization": "pca", "negative_gradient_method": gradient, "seed": seed,
    }


def mistake_map(rows, *, seed: int = 0, perplexity: float = PERPLEXITY, dims: int = PCA_DIMS, n_jobs: int = 1) -> tuple[np.ndarray, dict]:
    """``(coords [n, 2], params)`` for one space: ``reduce_rows`` then ``embed``, with both steps' params."""
    points, reduced = reduce_rows(rows, dims, seed)
    coords, embedded = embed(points, seed=seed, perplexity=perplexity, n_jobs=n_jobs)
    return coords, {**embedded, **reduced}
