"""Failure modes carry the documented fields, computed exactly from the arrays, deterministically."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from precompute.analysis.evidence import confusion_ami, reference_dominance
from precompute.analysis.failure_modes import cluster_points, default_clusters, describe_modes, renumber_by_size
from precompute.analysis.maps import reduce_rows


def planted(seed=0, sizes=(30, 20, 10), filters=40):
    """Mistakes of three kinds: each kind has its own salient filters and mostly its own confusion pair."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((sum(sizes), filters)).astype(np.float32)
    kind = np.repeat(np.arange(len(sizes)), sizes)
    for k in range(len(sizes)):
        z[kind == k, 5 * k : 5 * k + 5] += 6.0
    labels, preds = kind.copy(), (kind + 1) % 3
    other = rng.random(kind.size) < 0.15
    preds[other] = (kind[other] + 2) % 3  # a few mistakes of another pair
    ids = rng.permutation(1000)[: kind.size]
    return z, kind, labels, preds, ids


def test_modes_have_the_documented_fields_computed_from_the_arrays():
    z, kind, labels, preds, ids = planted()
    points, _ = reduce_rows(z, dims=10)
    cluster_of, params = cluster_points(points, clusters=3, seed=0)
    assert params == {"method": "kmeans", "clusters": 3, "n_init": 4, "seed": 0, "space": "pca of l2-normalized rows"}
    assert adjusted_rand_score(kind, cluster_of) == 1.0
    modes = describe_modes(cluster_of, z, labels, preds, ids, top_filters=5)
    assert [m["cluster"] for m in modes] == [0, 1, 2] and [m["size"] for m in modes] == [30, 20, 10]
    assert sorted(i for m in modes for i in m["sample_ids"]) == sorted(ids.tolist())
    for mode in modes:
        members = np.isin(ids, mode["sample_ids"])
        assert mode["sample_ids"] == sorted(mode["sample_ids"])
        mean_z = z[members].astype(np.float64).mean(0)
        assert [f["filter"] for f in mode["top_filters"]] == np.argsort(-mean_z, kind="stable")[:5].tolist()
        np.testing.assert_allclose([f["mean_z"] for f in mode["top_filters"]], np.sort(mean_z)[::-1][:5], rtol=1e-12)
        pairs = {}
        for t, p in zip(labels[members], preds[members]):
            pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
        want = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
        assert [((c["true"], c["pred"]), c["count"]) for c in mode["confusions"]] == want
    # the planted kind of cluster 0 (the 30) salient on filters 0..4
    assert {f["filter"] for f in modes[0]["top_filters"]} == set(range(5))


def test_seeded_and_deterministic():
    z, *_ = planted(1)
    points, _ = reduce_rows(z, dims=10, seed=2)
    a, _ = cluster_points(points, seed=2)
    b, _ = cluster_points(reduce_rows(z, dims=10, seed=2)[0], seed=2)
    np.testing.assert_array_equal(a, b)
    assert default_clusters(points.shape[0]) == 5 and a.max() == 4


def test_renumbering_orders_by_size_then_first_row():
    assert renumber_by_size(np.array([7, 3, 3, 9, 9, 5, 5, 5])).tolist() == [3, 1, 1, 2, 2, 0, 0, 0]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs(n):
    points = np.random.default_rng(0).standard_normal((n, 3)).astype(np.float32)
    cluster_of, params = cluster_points(points, clusters=5)
    assert cluster_of.shape == (n,) and params["clusters"] == min(n, 5)
    ids = np.arange(n)
    modes = describe_modes(cluster_of, points, ids % 2, (ids + 1) % 2, ids)
    assert sum(m["size"] for m in modes) == n


def test_bad_cluster_count_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 1"):
        cluster_points(np.zeros((3, 2)), clusters=0)


# ------------------------------------------------------------------------------------- evidence
def test_ami_is_one_for_the_pairs_themselves_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 5, 2000), rng.integers(0, 5, 2000)
    assert confusion_ami(labels * 5 + preds, labels, preds) == pytest.approx(1.0)
    assert abs(confusion_ami(rng.integers(0, 10, 2000), labels, preds)) < 0.02


def test_reference_dominance_counts_the_pairs_own_mistakes():
    reference_ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [1, 9, 9, 9]])
    got = reference_dominance(reference_ids, [0, 2], pair_ids=[1, 9, 4], num_samples=100)
    assert got == {"fraction": 6 / 8, "base_rate": 0.03, "references": 8}
