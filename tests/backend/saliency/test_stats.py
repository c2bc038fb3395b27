"""SaliencyStats: streaming and merged statistics equal the batch ones."""

import numpy as np
import pytest
import torch

from backend.saliency import SaliencyStats


def test_streaming_over_shuffled_chunks_equals_torch():
    profiles = torch.rand(1000, 37, dtype=torch.float64) * torch.logspace(-6, 2, 37, dtype=torch.float64)
    order = torch.randperm(1000)
    stats = SaliencyStats()
    for chunk in torch.tensor_split(profiles[order], [1, 7, 200, 201, 650]):
        stats.update(chunk)
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean, profiles.mean(dim=0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(stats.std, profiles.std(dim=0).numpy(), rtol=1e-10)


def test_merge_of_shards_equals_single_pass():
    profiles = np.random.default_rng(1).gamma(2.0, size=(500, 11)).astype(np.float32)
    whole = SaliencyStats().update(profiles)
    left, right = SaliencyStats().update(profiles[:123]), SaliencyStats().update(profiles[123:])
    merged = SaliencyStats().merge(left).merge(right)
    assert merged.count == whole.count
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.std, whole.std, rtol=1e-10)
    np.testing.assert_allclose(merged.std, profiles.astype(np.float64).std(axis=0, ddof=1), rtol=1e-10)


def test_standardize_numpy_and_torch_with_std_floor():
    profiles = np.random.default_rng(2).random((50, 4))
    profiles[:, 2] = 0.25  # constant filter: std 0 counts as 1
    stats = SaliencyStats().update(profiles)
    z = stats.standardize(profiles)
    expected = (profiles - profiles.mean(0)) / np.where(profiles.std(0, ddof=1) <= 1e-14, 1, profiles.std(0, ddof=1))
    np.testing.assert_allclose(z, expected, rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(z)) and np.all(z[:, 2] == 0)
    zt = stats.standardize(torch.tensor(profiles, requires_grad=True))
    assert isinstance(zt, torch.Tensor) and zt.requires_grad
    np.testing.assert_allclose(zt.detach().numpy(), expected, rtol=1e-12, atol=1e-14)


def test_state_dict_round_trip_and_errors():
    stats = SaliencyStats().update(np.random.default_rng(3).random((20, 3)))
    restored = SaliencyStats.from_state_dict(stats.state_dict())
    np.testing.assert_array_equal(restored.mean, stats.mean)
    np.testing.assert_allclose(restored.std, stats.std, rtol=1e-15)
    with pytest.raises(ValueError, match="empty"):
        SaliencyStats().standardize(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="merge"):
        stats.merge(SaliencyStats().update(np.zeros((2, 4))))
