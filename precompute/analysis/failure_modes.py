"""Failure modes: k-means clusters of the mistakes in saliency space, each described by its size, its
confusion pairs and the filters its members share.

Clustering runs on the same L2-normalized, PCA-reduced points as the map (``maps.reduce_rows``), so the
two views agree on geometry. Why k-means and not HDBSCAN (measured in docs/benchmarks.md): every mistake
gets a mode (on the demo HDBSCAN left 5-24% of the mistakes as noise, which the map could not colour),
the cost is O(n k d) per iteration, and a seed fixes the answer. Its price is choosing k;
``default_clusters`` ties it to the number of mistakes and the value used is returned with the params.
"""

from __future__ import annotations

import math

import numpy as np

MAX_CLUSTERS = 50
TOP_FILTERS = 10
N_INIT = 4


def default_clusters(num_mistakes: int) -> int:
    """sqrt(n / 2), the usual rule of thumb, capped at ``MAX_CLUSTERS`` so the list beside the map stays readable."""
    return max(1, min(MAX_CLUSTERS, round(math.sqrt(num_mistakes / 2)))) if num_mistakes else 0


def cluster_points(points: np.ndarray, *, clusters: int | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """``(labels int64 [n], params)``: k-means (k-means++ init, ``N_INIT`` restarts, seeded) on ``points``.

    Labels are renumbered by cluster size, largest first (ties: the cluster holding the smaller row), so
    the same partition always gets the same numbers.
    """
    from sklearn.cluster import KMeans

    if clusters is not None and clusters < 1:
        raise ValueError(f"the number of clusters must be at least 1, got {clusters}")
    n = points.shape[0]
    k = default_clusters(n) if clusters is None else min(int(clusters), n)
    params = {"method": "kmeans", "clusters": k, "n_init": N_INIT, "seed": seed, "space": "pca of l2-normalized rows"}
    if n == 0:
        return np.zeros(0, dtype=np.int64), params
    if k == 1 or points.shape[1] == 0:
        return np.zeros(n, dtype=np.int64), {**params, "clusters": 1}
    raw = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit_predict(points)
    return renumber_by_size(raw), params


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest; equal sizes are ordered by their first row."""
    found, first, sizes = np.unique(labels, return_index=True, return_counts=True)
    rank = np.lexsort((first, -sizes))
    new = np.empty(found.size, dtype=np.int64)
    new[rank] = np.arange(found.size)
    return new[np.searchsorted(found, labels)]


def describe_modes(
    cluster_of: np.ndarray, z_rows, labels, preds, ids, *, top_filters: int = TOP_FILTERS
) -> list[dict]:
    """Per cluster: ``{cluster, size, confusions: [{true, pred, count}], top_filters: [{filter, mean_z}],
    sample_ids}``; confusions by count, then pair; filters by mean standardized saliency over the members,
    then filter id; sample ids ascending."""
    labels, preds, ids = np.asarray(labels), np.asarray(preds), np.asarray(ids)
    modes = []
    for cluster in np.unique(cluster_of).tolist():
        members = np.flatnonzero(cluster_of == cluster)
        pairs, counts = np.unique(np.stack([labels[members], preds[members]], axis=1), axis=0, return_counts=True)
        by_count = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))
        mean_z = np.asarray(z_rows[members], dtype=np.float64).mean(axis=0)
        best = np.lexsort((np.arange(mean_z.size), -mean_z))[:top_filters]
        modes.append({
            "cluster": int(cluster),
            "size": int(members.size),
            "confusions": [{"true": int(pairs[i, 0]), "pred": int(pairs[i, 1]), "count": int(counts[i])} for i in by_count],
            "top_filters": [{"filter": int(f), "mean_z": float(mean_z[f])} for f in best],
            "sample_ids": sorted(int(i) for i in ids[members]),
        })
    return modes
