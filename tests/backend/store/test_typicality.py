"""Typicality (nearest-neighbour cosine similarity in feature space, as a percentile) against a direct numpy
computation."""

import numpy as np

from backend.store import typicality


def _direct_nn(features, query, exclude=None):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    scores = unit @ q
    if exclude is not None:
        scores[exclude] = -np.inf
    return scores.max()


def test_nearest_similarity_and_percentile_match_numpy(monkeypatch):
    monkeypatch.setattr(typicality, "CHUNK", 7)  # several chunks, one query's own row in each
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 6)).astype(np.float32) + 2.0  # one cluster, like a dataset's features
    ids = np.array([0, 8, 21, 49])
    got = typicality.nearest_similarity(features, features[ids], exclude=ids)
    want = [_direct_nn(features.astype(np.float64), features[i].astype(np.float64), exclude=i) for i in ids]
    np.testing.assert_allclose(got, want, atol=1e-6)

    reference = typicality.reference_similarities(features, rows=20, seed=3)
    drawn = np.sort(np.random.default_rng(3).choice(50, 20, replace=False))
    np.testing.assert_allclose(reference, [_direct_nn(features.astype(np.float64), features[i].astype(np.float64), i)
                                           for i in drawn], atol=1e-6)
    assert len(typicality.reference_similarities(features, rows=500)) == 50  # all rows when fewer

    typical = features[3] + 0.01
    far = -features.mean(axis=0)  # points away from the whole cluster
    for query in (typical, far):
        answer = typicality.typicality(features, reference, query)
        nn = _direct_nn(features.astype(np.float64), query.astype(np.float64))
        assert abs(answer["nn_similarity"] - nn) < 1e-6
        assert answer["percentile"] == 100.0 * np.mean(reference <= answer["nn_similarity"])
    assert typicality.typicality(features, reference, far)["percentile"] == 0.0
    assert typicality.typicality(features, reference, typical)["percentile"] > 90.0
