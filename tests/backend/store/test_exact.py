"""Exact search through the int8 prefilter: the same top k as the plain float32 scan, on random and
adversarial data, layer ranges, filters, ties and zero rows; the per-row bounds hold the true cosine."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.store import exact, search

LAYERS = 6
CUTS = [0, 16, 40, 96, 120, 200, 232]  # uneven layers; 232 is not a multiple of 16 (the kernel needs padding)


@pytest.fixture(autouse=True)
def prefilter_everything(monkeypatch):
    """Every layer range goes through the int8 prefilter, however narrow."""
    monkeypatch.setattr(exact, "FLOAT32_SCAN_SHARE", 0.0)


def clustered(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, CUTS[-1]))
    return (centres[rng.integers(0, 12, n)] + rng.standard_normal((n, CUTS[-1]))).astype(np.float32)


def searcher(matrix, directory, tag="t"):
    return exact.ExactSearch(matrix, search.prefix_squares(matrix, CUTS), CUTS, directory, tag, min_bytes=0)


def float32_scan(s, query, k, layers, allowed):
    bounds = (CUTS[layers[0]], CUTS[layers[1]])
    return search.top_k(search.range_cosine(s.matrix, s.prefix_sq, query, bounds, layers), k, allowed)


def assert_same_top_k(got, want, tie_tolerance=1e-6):
    """Identical ids and scores; an id may differ only where its score ties another within float32 rounding."""
    ids, scores = want
    assert len(got.ids) == len(ids)
    np.testing.assert_allclose(got.scores, scores, rtol=0, atol=tie_tolerance)
    for position in np.flatnonzero(got.ids != ids):
        assert abs(scores[position] - scores[min(position + 1, len(scores) - 1)]) <= tie_tolerance or \
            abs(scores[position] - scores[max(position - 1, 0)]) <= tie_tolerance


def true_cosine(matrix, query, layers):
    a, b = CUTS[layers[0]], CUTS[layers[1]]
    x, q = np.asarray(matrix, np.float64)[:, a:b], np.asarray(query, np.float64)[a:b]
    denom = np.linalg.norm(x, axis=1) * np.linalg.norm(q)
    return np.divide(x @ q, denom, out=np.zeros(len(x)), where=denom > 0)


RANGES = [(0, LAYERS), (0, 1), (1, 3), (2, 6), (5, 6)]


@pytest.mark.parametrize("layers", RANGES)
def test_random_queries_match_the_float32_scan(tmp_path, layers):
    matrix = clustered()
    s = searcher(matrix, tmp_path)
    rng = np.random.default_rng(1)
    for qid in rng.choice(len(matrix), 15, replace=False):
        allowed = np.ones(len(matrix), bool)
        allowed[qid] = False
        got = s.search(matrix[qid], 10, layers, allowed)
        assert_same_top_k(got, float32_scan(s, matrix[qid], 10, layers, allowed))
        assert got.rescored < len(matrix)  # the prefilter did prune (otherwise this test proves little)


@pytest.mark.parametrize("layers", RANGES)
def test_bounds_hold_the_true_cosine(tmp_path, layers):
    matrix = clustered(seed=2)
    s = searcher(matrix, tmp_path)
    codes = s._quantized()
    for query in (matrix[3], np.random.default_rng(3).standard_normal(CUTS[-1]).astype(np.float32) * 1e3):
        low, high = codes.cosine_bounds(query, layers, CUTS, s.prefix_sq)
        truth = true_cosine(matrix, query, layers)
        assert np.all(low <= truth) and np.all(truth <= high)
        assert np.median(high - low) < 0.1  # and they are tight enough to prune


def test_rows_built_to_sit_on_the_bound(tmp_path):
    """Queries along a row's own quantization error: its true cosine exceeds the quantized estimate by the
    whole error term, made large by an outlier value that coarsens the row's int8 steps."""
    matrix = clustered(n=300, seed=4)
    matrix[[0, 17, 250], [7, 100, 231]] = 80.0
    s = searcher(matrix, tmp_path)
    codes = s._quantized()
    unit = matrix.astype(np.float64) / np.linalg.norm(matrix.astype(np.float64), axis=1, keepdims=True)
    for row in (0, 17, 250):
        error = unit[row] - codes.scale[row] * codes.codes[row, : CUTS[-1]].astype(np.float64)
        query = (error / np.linalg.norm(error)).astype(np.float32)
        truth = true_cosine(matrix, query, (0, LAYERS))
        estimate = codes.scale[row] * float(codes.codes[row, : CUTS[-1]].astype(np.float64) @ query)
        low, high = codes.cosine_bounds(query, (0, LAYERS), CUTS, s.prefix_sq)
        assert truth[row] - estimate > 0.6 * (high[row] - low[row]) / 2  # most of the slack is really used
        assert low[row] <= truth[row] <= high[row]
        assert_same_top_k(s.search(query, 5, (0, LAYERS), None), float32_scan(s, query, 5, (0, LAYERS), None))


def test_near_ties_around_the_kth_score(tmp_path):
    """Many rows within 1e-5 of each other straddle the k-th score: all must be re-scored."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(CUTS[-1]).astype(np.float32)
    matrix = clustered(n=400, seed=6)
    matrix[:60] = base + 1e-3 * rng.standard_normal((60, CUTS[-1])).astype(np.float32)
    s = searcher(matrix, tmp_path)
    for k in (1, 10, 30, 59):
        got = s.search(base, k, (0, LAYERS), None)
        assert_same_top_k(got, float32_scan(s, base, k, (0, LAYERS), None))
        assert set(got.ids) <= set(range(60))


def test_exact_ties_break_by_lower_id_and_zero_rows_score_zero(tmp_path):
    matrix = clustered(n=200, seed=7)
    matrix[[150, 30, 90]] = matrix[5] * np.float32(2.0)  # same direction: cosine ties with row 5
    matrix[[10, 11]] = 0.0
    matrix[12, CUTS[1] : CUTS[3]] = 0.0  # zero only inside layers 1:3
    s = searcher(matrix, tmp_path)
    got = s.search(matrix[5], 4, (0, LAYERS), None)
    assert got.ids[:4].tolist() == [5, 30, 90, 150]
    assert_same_top_k(got, float32_scan(s, matrix[5], 4, (0, LAYERS), None))
    ranged = s.search(matrix[12], 200, (1, 3), None)  # k > rows: everything, the zero rows scoring 0
    assert sorted(ranged.ids.tolist()) == list(range(200))
    assert all(score == 0.0 for i, score in zip(ranged.ids, ranged.scores) if i in (10, 11, 12))
    zero_query = s.search(np.zeros(CUTS[-1], np.float32), 3, (0, LAYERS), None)
    assert zero_query.ids.tolist() == [0, 1, 2] and not zero_query.scores.any()


@pytest.mark.parametrize("k", [1, 7, 40, 1000])
def test_filtered_rows_and_k_beyond_the_candidates(tmp_path, k):
    matrix = clustered(n=300, seed=8)
    s = searcher(matrix, tmp_path)
    allowed = np.random.default_rng(9).random(300) < 0.1  # like misclassified_only: a sparse subset
    for layers in ((0, LAYERS), (2, 6)):
        got = s.search(matrix[0], k, layers, allowed)
        assert len(got.ids) == min(k, int(allowed.sum())) and allowed[got.ids].all()
        assert_same_top_k(got, float32_scan(s, matrix[0], k, layers, allowed))
    assert s.search(matrix[0], k, (0, LAYERS), np.zeros(300, bool)).ids.size == 0


def test_kernel_rounding_stays_inside_the_bound():
    """The int8 kernel's error, measured against float64, on random rows and rows whose products cancel."""
    rng = np.random.default_rng(10)
    codes = rng.integers(-127, 128, (64, 1024)).astype(np.int8)
    p = torch.from_numpy(rng.standard_normal(1024).astype(np.float32)).to(torch.bfloat16)
    p64 = p.double().numpy()
    codes[32:] = (np.abs(codes[32:]) * np.sign(p64) * np.where(np.arange(1024) < 512, 1, -1)).astype(np.int8)
    quantized = exact.QuantizedRows(codes, np.ones(64), np.zeros((64, 2)))
    error = np.abs(quantized._dots(p) - codes.astype(np.float64) @ p64)
    gamma = 1024 * 2.0**-24 / (1 - 1024 * 2.0**-24)
    assert np.all(error <= (gamma + exact._KERNEL_REL) * np.linalg.norm(codes.astype(np.float64), axis=1)
                  * np.linalg.norm(p64))


def test_cache_is_built_once_reused_and_rebuilt_for_other_contents(tmp_path):
    matrix = clustered(n=100, seed=11)
    first = searcher(matrix, tmp_path)
    first.search(matrix[0], 3, (0, LAYERS), None)
    stamp = os.stat(tmp_path / exact.BOUNDS).st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == [exact.BOUNDS, exact.CODES]
    searcher(matrix, tmp_path).search(matrix[0], 3, (0, LAYERS), None)
    assert os.stat(tmp_path / exact.BOUNDS).st_mtime_ns == stamp
    changed = matrix[::-1].copy()
    other = searcher(changed, tmp_path, tag="other contents")
    assert_same_top_k(other.search(changed[0], 5, (0, LAYERS), None), float32_scan(other, changed[0], 5, (0, LAYERS), None))
    assert os.stat(tmp_path / exact.BOUNDS).st_mtime_ns != stamp


def test_small_matrices_and_read_only_dirs_scan_float32(tmp_path):
    matrix = clustered(n=100, seed=12)
    small = exact.ExactSearch(matrix, search.prefix_squares(matrix, CUTS), CUTS, tmp_path, "t")  # default size floor
    assert_same_top_k(small.search(matrix[1], 5, (0, LAYERS), None), float32_scan(small, matrix[1], 5, (0, LAYERS), None))
    assert list(tmp_path.iterdir()) == []
    missing = searcher(matrix, Path(tmp_path) / "no such dir")
    got = missing.search(matrix[1], 5, (0, LAYERS), None)
    assert got.rescored == len(matrix) and not missing.use_codes
    assert_same_top_k(got, float32_scan(missing, matrix[1], 5, (0, LAYERS), None))


def test_artifacts_neighbours_through_the_prefilter(tmp_path, monkeypatch):
    """``Artifacts.neighbors`` answers exactly as the float32 scan when the int8 copy is in use."""
    from backend.store import Artifacts
    from tests.precompute.tiny import build_artifacts

    build_artifacts(tmp_path, n=120)
    plain = Artifacts.open(tmp_path)
    expected = {(q, layers, only): plain.neighbors(q, k=8, layers=layers, misclassified_only=only)
                for q in (0, 57) for layers in (None, (1, 3)) for only in (False, True)}
    monkeypatch.setattr(exact, "MIN_BYTES", 0)
    prefiltered = Artifacts.open(tmp_path)
    for (q, layers, only), hits in expected.items():
        got = prefiltered.neighbors(q, k=8, layers=layers, misclassified_only=only)
        assert [h["id"] for h in got] == [h["id"] for h in hits]
        np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in hits], rtol=0, atol=1e-6)
    assert (tmp_path / exact.CODES).is_file()
