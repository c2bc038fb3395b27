"""Maps: cosine geometry, seeded determinism, tiny inputs, and that t-SNE keeps planted groups apart."""

import numpy as np
import pytest

from precompute.analysis.maps import embed, mistake_map, normalize_rows, reduce_rows


def blobs(n_per=40, groups=3, dims=200, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((groups, dims)) * 3
    rows = np.concatenate([c + rng.standard_normal((n_per, dims)) for c in centers]).astype(np.float32)
    return rows, np.repeat(np.arange(groups), n_per)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 30])
def test_tiny_inputs_fall_back_to_pca_and_say_so(n):
    rows = np.random.default_rng(n).standard_normal((n, 7)).astype(np.float32)
    coords, params = mistake_map(rows, perplexity=10)
    assert coords.shape == (n, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert params["method"] == "pca" and "perplexity" in params["reason"]
    assert params["pca_dims"] == max(0, min(n - 1, 7))


def test_tsne_is_seeded_and_keeps_planted_groups_apart():
    rows, group = blobs()
    coords, params = mistake_map(rows, seed=3, perplexity=10)
    again, _ = mistake_map(rows, seed=3, perplexity=10)
    other, _ = mistake_map(rows, seed=4, perplexity=10)
    assert params["method"] == "tsne" and params["seed"] == 3 and params["perplexity"] == 10
    assert params["negative_gradient_method"] == "bh" and params["pca_dims"] == 50
    np.testing.assert_array_equal(coords, again)
    assert not np.allclose(coords, other)
    distances = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (group[distances.argmin(1)] == group).mean() == 1.0  # every point's nearest neighbour is its own group


def test_only_directions_matter():
    rows, _ = blobs(n_per=10)
    scales = np.random.default_rng(1).uniform(0.1, 10, size=(rows.shape[0], 1)).astype(np.float32)
    a, _ = reduce_rows(rows, dims=5)
    b, _ = reduce_rows(rows * scales, dims=5)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_normalize_rows_keeps_zero_rows_and_reads_memmaps(tmp_path):
    rows = np.array([[3, 4], [0, 0], [-1, 0]], dtype=np.float32)
    path = tmp_path / "rows.npy"
    np.save(path, rows)
    got = normalize_rows(np.load(path, mmap_mode="r"))
    np.testing.assert_allclose(got, [[0.6, 0.8], [0, 0], [-1, 0]])


def test_embed_of_points_without_dimensions():
    coords, params = embed(np.zeros((4, 0), dtype=np.float32), perplexity=5)
    assert coords.shape == (4, 2) and not coords.any() and params["method"] == "pca"


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="expected a \\[rows, dims\\] array"):
        reduce_rows(np.zeros(5))
