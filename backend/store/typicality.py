"""How typical an image is of the dataset, for uploads: its nearest-neighbour cosine similarity in feature
space (the penultimate features stored by the precompute job), ranked against the same quantity for a
seeded sample of the dataset's own rows (each against all the others).

An image far from every dataset image (a cat photo on Fashion-MNIST) gets a similarity below almost all
dataset rows', so a low percentile says "out of distribution" whatever the model's confidence. Features
rather than saliency profiles, because the profile of an unfamiliar image is the gradient of a loss on a
class it does not belong to, whose scale says little about familiarity.
"""

from __future__ import annotations

import numpy as np

from backend.store.search import normalize_rows

REFERENCE_ROWS = 512  # dataset rows whose nearest-neighbour similarity forms the reference distribution
CHUNK = 8192  # dataset rows normalized and compared at a time (keeps memory flat on large datasets)


def nearest_similarity(features: np.ndarray, queries: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Each query's largest cosine similarity to a row of ``features``; ``exclude[i]`` (a row id, or -1) is
    left out for query ``i`` (a dataset row is not its own neighbour)."""
    queries = normalize_rows(np.atleast_2d(queries))
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    for start in range(0, len(features), CHUNK):
        scores = queries @ normalize_rows(features[start:start + CHUNK]).T
        if exclude is not None:
            mine = (exclude >= start) & (exclude < start + len(scores[0]))
            scores[np.flatnonzero(mine), exclude[mine] - start] = -np.inf
        best = np.maximum(best, scores.max(axis=1))
    return best


def reference_similarities(features: np.ndarray, rows: int = REFERENCE_ROWS, seed: int = 0) -> np.ndarray:
    """The nearest-neighbour similarity of ``rows`` dataset rows drawn with ``seed`` (all rows if fewer)."""
    n = len(features)
    ids = np.arange(n) if n <= rows else np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    return nearest_similarity(features, np.asarray(features[ids]), exclude=ids)


def typicality(features: np.ndarray, reference: np.ndarray, query: np.ndarray) -> dict:
    """``{nn_similarity, percentile}``: the query's nearest-neighbour similarity and the percentage of the
    reference rows whose own similarity is at most that (low: unlike the dataset)."""
    similarity = float(nearest_similarity(features, query)[0])
    return {"nn_similarity": similarity, "percentile": float(100.0 * np.mean(reference <= similarity)),
            "reference_rows": int(len(reference))}
