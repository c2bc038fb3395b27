"""GET /api/filters/{index}/distribution: a filter's standardized saliency over the correct and the misclassified
samples, checked against profiles_std and the predictions (each sample placed in its bin independently)."""

from __future__ import annotations

import numpy as np
import pytest


def bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin: [e_i, e_i+1) except the last bin, which also holds its right edge."""
    return np.minimum(np.searchsorted(edges, values, side="right") - 1, edges.size - 2)


@pytest.mark.parametrize("bins", [1, 7, 40])
def test_histogram_counts_each_sample_once_in_its_bin(client, reference, bins):
    a = reference.artifacts
    z = np.asarray(a.profiles_std, dtype=np.float64)
    correct = np.asarray(a.labels) == np.asarray(a.preds)
    assert 0 < correct.sum() < correct.size  # both groups present, or the test says little
    for f in (0, a.layout.num_filters // 3, a.layout.num_filters - 1):
        got = client.get(f"/api/filters/{f}/distribution", params={"bins": bins}).json()
        layer, channel = a.layout.locate(f)
        assert (got["filter"], got["layer"], got["channel"]) == (f, layer, channel)
        edges = np.asarray(got["edges"])
        assert edges.size == bins + 1 and np.all(np.diff(edges) > 0)
        assert edges[0] == pytest.approx(z[:, f].min(), abs=1e-6)
        assert edges[-1] == pytest.approx(z[:, f].max(), abs=1e-6)
        for name, members in (("correct", correct), ("misclassified", ~correct)):
            expected = np.bincount(bin_of(z[members, f], edges), minlength=bins)
            assert got[name] == expected.tolist(), name
            assert got[f"{name}_mean"] == pytest.approx(z[members, f].mean(), abs=1e-6)


def test_default_bins_and_bad_parameters(client, reference):
    num_filters = reference.artifacts.layout.num_filters
    assert len(client.get("/api/filters/0/distribution").json()["correct"]) == 40
    for path, status, words in ((f"/api/filters/{num_filters}/distribution", 404, f"no filter {num_filters}"),
                                ("/api/filters/0/distribution?bins=0", 422, "bins"),
                                ("/api/filters/0/distribution?bins=201", 422, "bins must be in [1, 200]"),
                                ("/api/filters/-1/distribution", 422, "index")):
        response = client.get(path)
        assert response.status_code == status, (path, response.text)
        assert words in response.json()["detail"], response.text
