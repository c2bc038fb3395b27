"""Streaming fingerprints equal numpy means of the same rows, in any shard split, merged across ranks."""

import numpy as np
import pytest

from backend.saliency import SaliencyStats
from precompute.analysis.fingerprints import Fingerprints


def data(seed=0, n=300, f=11, classes=4):
    rng = np.random.default_rng(seed)
    raw = rng.gamma(2.0, 1.0, size=(n, f)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, classes, n))
    return raw, labels, preds


def numpy_fingerprints(rows, labels, preds, classes):
    correct = labels == preds
    class_means = {c: rows[correct & (labels == c)].astype(np.float64).mean(0) for c in range(classes)
                   if (correct & (labels == c)).any()}
    pair_means = {}
    for t, p in sorted({(int(t), int(p)) for t, p in zip(labels[~correct], preds[~correct])}):
        chosen = (labels == t) & (preds == p)
        pair_means[(t, p)] = (rows[chosen].astype(np.float64).mean(0), int(chosen.sum()))
    return class_means, pair_means


@pytest.mark.parametrize("seed", range(4))
def test_streaming_and_merged_equal_numpy_means(seed):
    raw, labels, preds = data(seed)
    rng = np.random.default_rng(100 + seed)
    order = rng.permutation(raw.shape[0])
    ranks = [Fingerprints(4, raw.shape[1]) for _ in range(3)]
    for i, shard in enumerate(np.array_split(order, 7)):
        ranks[i % 3].update(raw[shard], labels[shard], preds[shard])
    merged = Fingerprints.from_state_dict(ranks[0].state_dict()).merge(ranks[1]).merge(ranks[2])

    want_classes, want_pairs = numpy_fingerprints(raw, labels, preds, 4)
    classes, means, counts = merged.class_means()
    assert classes.tolist() == sorted(want_classes)
    np.testing.assert_allclose(means, np.stack([want_classes[c] for c in classes.tolist()]), rtol=1e-12)
    assert counts.tolist() == [int(((labels == preds) & (labels == c)).sum()) for c in classes.tolist()]
    pairs, means, counts = merged.confusion_means()
    assert [tuple(p) for p in pairs.tolist()] == list(want_pairs)
    np.testing.assert_allclose(means, np.stack([m for m, _ in want_pairs.values()]), rtol=1e-12)
    assert counts.tolist() == [c for _, c in want_pairs.values()]
    assert counts.sum() == (labels != preds).sum()


def test_raw_means_standardized_equal_means_of_standardized_rows():
    raw, labels, preds = data(1)
    stats = SaliencyStats().update(raw)
    from_raw = Fingerprints(4, raw.shape[1]).update(raw, labels, preds)
    from_z = Fingerprints(4, raw.shape[1]).update(stats.standardize(raw.astype(np.float64)), labels, preds)
    np.testing.assert_allclose(stats.standardize(from_raw.confusion_means()[1]), from_z.confusion_means()[1], atol=1e-12)
    np.testing.assert_allclose(stats.standardize(from_raw.class_means()[1]), from_z.class_means()[1], atol=1e-12)


def test_empty_and_all_correct():
    empty = Fingerprints(3, 5)
    assert [a.shape for a in empty.class_means()] == [(0,), (0, 5), (0,)]
    assert [a.shape for a in empty.confusion_means()] == [(0, 2), (0, 5), (0,)]
    empty.update(np.zeros((0, 5)), np.zeros(0, int), np.zeros(0, int))
    fp = Fingerprints(3, 5).update(np.ones((2, 5)), np.array([1, 1]), np.array([1, 1]))
    assert fp.confusion_means()[0].shape == (0, 2)
    assert Fingerprints.from_state_dict(fp.state_dict()).class_means()[2].tolist() == [2]


@pytest.mark.parametrize("labels,preds,message", [
    (np.array([0, 3]), np.array([0, 0]), "labels must be integers"),
    (np.array([0, 1]), np.array([0, -1]), "predictions must be integers"),
    (np.array([0.0, 1.0]), np.array([0, 1]), "labels must be integers"),
    (np.array([0]), np.array([0]), "expected 2 labels"),
])
def test_bad_input_is_a_clear_error(labels, preds, message):
    with pytest.raises(ValueError, match=message):
        Fingerprints(3, 4).update(np.ones((2, 4)), labels, preds)
