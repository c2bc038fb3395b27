"""Streaming top-K reference samples equal the all-at-once answer; activation maxima equal a direct forward."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from backend.saliency import FilterLayout, LayerSpan
from precompute.analysis import reference
from precompute.analysis.reference import TopK, channel_maxima, decode_keys, order_keys
from tests.precompute.tiny import tiny_model


def brute_top_k(values: np.ndarray, ids: np.ndarray, k: int):
    """Per column: sort all rows by value descending, then id ascending; keep k."""
    out_ids, out_values = [], []
    for column in values.T.astype(np.float32) + np.float32(0.0):
        order = np.lexsort((ids, -column.astype(np.float64)))[:k]
        out_ids.append(ids[order])
        out_values.append(column[order])
    return np.array(out_ids).reshape(values.shape[1], -1), np.array(out_values).reshape(values.shape[1], -1)


def tied_values(rng, n, f):
    """Few distinct values (many ties), both zeros' signs, infinities and negatives."""
    pool = np.array([-np.inf, -2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, np.inf], dtype=np.float32)
    return pool[rng.integers(0, pool.size, size=(n, f))]


def random_shards(rng, n):
    """Cut points of a random split of 0..n into shards, some of them empty."""
    cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(1, 8)))
    return np.split(np.arange(n), cuts)


@pytest.mark.parametrize("dense_fraction", [0.0, 0.05, 2.0])  # always dense, the default mix, always sparse
@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_all_at_once_in_any_order_and_split(monkeypatch, dense_fraction, seed):
    monkeypatch.setattr(reference, "DENSE_FRACTION", dense_fraction)
    rng = np.random.default_rng(seed)
    n, f, k = 150, 9, 7
    values = tied_values(rng, n, f) if seed % 2 == 0 else rng.standard_normal((n, f)).astype(np.float32)
    ids = rng.permutation(10 * n)[:n]  # sparse, unordered ids
    want_ids, want_values = brute_top_k(values, ids, k)

    order = rng.permutation(n)
    top = TopK(f, k)
    for shard in random_shards(rng, n):
        top.update(values[order[shard]], ids[order[shard]])
    got_ids, got_values = top.result()
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_values, want_values)

    # Two ranks with an arbitrary partition of the rows, merged either way round.
    mask = rng.random(n) < 0.5
    a, b = TopK(f, k).update(values[mask], ids[mask]), TopK(f, k).update(values[~mask], ids[~mask])
    for merged in (TopK.from_state_dict(a.state_dict()).merge(b), TopK.from_state_dict(b.state_dict()).merge(a)):
        np.testing.assert_array_equal(merged.result()[0], want_ids)
        assert merged.seen == n


def test_ties_go_to_the_smaller_id_and_signed_zeros_are_equal():
    top = TopK(1, 3)
    top.update(np.array([[1.0], [0.0]], dtype=np.float32), np.array([9, 4]))
    top.update(np.array([[1.0], [-0.0], [1.0]], dtype=np.float32), np.array([5, 2, 7]))
    ids, values = top.result()
    assert ids.tolist() == [[5, 7, 9]]
    top.update(np.array([[1.0]], dtype=np.float32), np.array([1]))
    assert top.result()[0].tolist() == [[1, 5, 7]]
    zeros = TopK(1, 2).update(np.array([[0.0], [-0.0]], dtype=np.float32), np.array([3, 1]))
    assert zeros.result()[0].tolist() == [[1, 3]]


def test_keys_round_trip_and_order_like_value_then_smaller_id():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(500).astype(np.float32), [np.inf, -np.inf, 0, 1e-45, -1e-45]]).astype(np.float32)
    ids = rng.integers(0, reference.ID_LIMIT, size=values.size)
    keys = order_keys(values, ids)
    back_values, back_ids = decode_keys(keys)
    np.testing.assert_array_equal(back_values, values)
    np.testing.assert_array_equal(back_ids, ids)
    by_keys = np.argsort(keys)[::-1]
    by_definition = np.lexsort((ids, -values.astype(np.float64)))
    np.testing.assert_array_equal(by_keys, by_definition)


def test_empty_and_fewer_rows_than_k():
    top = TopK(4, 5)
    assert [a.shape for a in top.result()] == [(4, 0), (4, 0)]
    top.update(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64))
    top.update(np.ones((2, 4), dtype=np.float32), np.array([8, 3]))
    ids, values = top.result()
    assert ids.tolist() == [[3, 8]] * 4 and values.dtype == np.float32
    assert TopK(0, 3).update(np.zeros((2, 0)), np.array([0, 1])).result()[0].shape == (0, 2)


@pytest.mark.parametrize("values,ids,message", [
    (np.array([[np.nan, 1.0]]), np.array([0]), "NaN"),
    (np.ones((1, 2)), np.array([-1]), "ids must lie"),
    (np.ones((1, 2)), np.array([reference.ID_LIMIT]), "ids must lie"),
    (np.ones((2, 2)), np.array([0]), "integer ids"),
    (np.ones((1, 3)), np.array([0]), "shape"),
])
def test_bad_input_is_a_clear_error(values, ids, message):
    with pytest.raises(ValueError, match=message):
        TopK(2, 2).update(values, ids)


def test_merge_refuses_other_shapes():
    with pytest.raises(ValueError, match="cannot merge"):
        TopK(2, 2).merge(TopK(2, 3))


# ----------------------------------------------------------------------------------- activations
def conv_outputs_by_hand(model, x):
    """TinyNet's conv outputs, by running its body module by module (no hooks)."""
    outputs = []
    for module in model.body:
        x = module(x)
        if isinstance(module, nn.Conv2d):
            outputs.append(x)
    return outputs


def test_channel_maxima_equal_a_direct_forward_and_restore_the_model():
    model = tiny_model().train()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    got = channel_maxima(model, x)
    model.eval()
    with torch.no_grad():
        want = torch.cat([out.amax(dim=(2, 3)) for out in conv_outputs_by_hand(model, x)], dim=1).numpy()
    assert got.shape == (5, FilterLayout.from_model(model).num_filters) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    model.train()  # was train before the call: flags restored, no hook left behind
    channel_maxima(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_channel_maxima_on_torchvision_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    layout = FilterLayout.from_model(model)
    x = torch.randn(2, 3, 48, 48)
    got = channel_maxima(model, x, layout)
    with torch.no_grad():
        stem = model.conv1(x)
        h = model.maxpool(model.relu(model.bn1(stem)))
        h = model.layer3(model.layer2(model.layer1(h)))
        h = model.layer4[0](h)
        block = model.layer4[1]
        last = block.conv2(block.relu(block.bn1(block.conv1(h))))
    start, stop = layout.filter_range(0, 1)
    np.testing.assert_allclose(got[:, start:stop], stem.amax(dim=(2, 3)).numpy(), atol=1e-5)
    np.testing.assert_allclose(got[:, -512:], last.amax(dim=(2, 3)).numpy(), atol=1e-5)
    assert np.isfinite(got).all()


class Tokens(nn.Module):
    """A Linear applied to every token of a [B, T, D] input, then a conv on the result."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        y = self.proj(x)
        return self.conv(y[:, None])


def test_linear_rows_take_the_max_over_tokens():
    torch.manual_seed(0)
    model = Tokens().eval()
    layout = FilterLayout([LayerSpan("proj.weight", 0, 6, (6, 4)), LayerSpan("conv.weight", 6, 8, (2, 1, 1, 1))])
    x = torch.randn(3, 5, 4)
    got = channel_maxima(model, x, layout)
    with torch.no_grad():
        y = model.proj(x)
        want = torch.cat([y.amax(dim=1), model.conv(y[:, None]).amax(dim=(2, 3))], dim=1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_module_that_is_not_its_channels_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Flatten())
    bad = FilterLayout([LayerSpan("0.weight", 0, 4, (4, 1, 1, 1))])
    with pytest.raises(ValueError, match="expected 4 channels"):
        channel_maxima(model, torch.randn(2, 1, 3, 3), bad)
