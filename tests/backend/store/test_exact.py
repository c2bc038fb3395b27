"""Exact search through the compact copy (principal coefficients + 4-bit residual code planes): the same top
k as the plain float32 scan, on random and adversarial data, layer ranges, filters, ties and zero rows; the
per-row bounds of both code stages hold the true cosine; the kernel's integer sums are exact."""

import os
from pathlib import Path

import numpy as np
import pytest

from backend.store import exact, native, search

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: exact search scans float32 here")

LAYERS = 6
CUTS = [0, 16, 40, 96, 120, 200, 232]  # uneven layers, across 128-value blocks; 232 needs padding


@pytest.fixture(autouse=True)
def prefilter_everything(monkeypatch):
    """Every layer range goes through the codes, however narrow."""
    monkeypatch.setattr(exact, "FLOAT32_SCAN_DIMS", 0)


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


def both_stages(s, query, layers):
    bounds = s._quantized().query_bounds(query, layers, CUTS, s.prefix_sq)
    return bounds.coarse(None), bounds.fine(None)


@pytest.mark.parametrize("layers", RANGES)
def test_bounds_of_both_stages_hold_the_true_cosine(tmp_path, layers):
    matrix = clustered(seed=2)
    s = searcher(matrix, tmp_path)
    spiky = np.random.default_rng(3).standard_normal(CUTS[-1]).astype(np.float32) * 1e3
    spiky[[5, 150]] = 4e5  # one huge value: the int8 query is coarse everywhere else (its rounding term counts)
    for query in (matrix[3], spiky):
        truth = true_cosine(matrix, query, layers)
        (low1, high1), (low2, high2) = both_stages(s, query, layers)
        assert np.all(low1 <= truth) and np.all(truth <= high1)
        assert np.all(low2 <= truth) and np.all(truth <= high2)
        assert np.median(high2 - low2) < np.median(high1 - low1) < 0.5  # the second stage is the tighter one


def test_rows_built_to_sit_on_the_bound(tmp_path):
    """Queries along a row's own quantization error: its true cosine exceeds the estimate by the whole error
    term (made large by an outlier value that coarsens the row's steps), in each stage."""
    matrix = clustered(n=300, seed=4)
    matrix[[0, 17, 250], [7, 100, 231]] = 80.0
    s = searcher(matrix, tmp_path)
    codes = s._quantized()
    unit = matrix.astype(np.float64) / np.linalg.norm(matrix.astype(np.float64), axis=1, keepdims=True)
    for row in (0, 17, 250):
        residual = unit[row] - codes.basis @ codes.coeffs[row]
        full = np.rint(residual / codes.scale[row])  # the stored codes c, as the copy made them
        coarse = np.floor((full + 8) / 16)
        for stage, code_part in ((0, 16 * coarse), (1, full)):
            error = residual - codes.scale[row] * code_part
            query = (error / np.linalg.norm(error)).astype(np.float32)
            truth = true_cosine(matrix, query, (0, LAYERS))
            low, high = both_stages(s, query, (0, LAYERS))[stage]
            centre = (low[row] + high[row]) / 2
            assert truth[row] - centre > 0.6 * (high[row] - low[row]) / 2  # most of the slack is really used
            assert low[row] <= truth[row] <= high[row]
            assert_same_top_k(s.search(query, 5, (0, LAYERS), None), float32_scan(s, query, 5, (0, LAYERS), None))


def test_rows_on_the_code_grid_need_the_query_rounding_term(tmp_path, monkeypatch):
    """Rows whose residual is exactly step x codes have no quantization error, so only the term for the
    query's integer rounding covers them; queries whose rounding leans along each row's codes use it up."""
    monkeypatch.setattr(exact, "principal_directions", lambda m: np.zeros((m.shape[1], 0)))  # residual = unit row
    rng = np.random.default_rng(15)
    grid = rng.integers(-60, 61, (40, CUTS[-1]))
    grid[:, 0] = 119  # the largest code: the step is |x| / 119 of the unit row, exactly
    matrix = grid.astype(np.float32)
    s = searcher(matrix, tmp_path)
    for row in (0, 13, 39):
        query = 0.99 / 508 * np.sign(grid[row]).astype(np.float64)  # below one fine step: all of it is rounding
        query[0] = 127.0  # fixes the query's step at 1
        query = query.astype(np.float32)
        truth = true_cosine(matrix, query, (0, LAYERS))
        low, high = both_stages(s, query, (0, LAYERS))[1]
        assert np.all(low <= truth) and np.all(truth <= high)
        slack = (high[row] - low[row]) / 2
        assert abs(truth[row] - (high[row] + low[row]) / 2) > 0.1 * slack > 10 * exact._MARGIN


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


def unpacked(plane):
    """The kernel's layout undone: ``[rows, 2 W]`` codes 0..15 in dimension order."""
    blocks = plane.reshape(plane.shape[0], -1, 64)
    return np.stack([blocks & 15, blocks >> 4], axis=2).reshape(plane.shape[0], -1).astype(np.int64)


@pytest.mark.parametrize("flags", [None, [], ["-mavx2"]], ids=["this CPU's", "plain C", "plain C, AVX2"])
def test_kernel_sums_are_exact(monkeypatch, flags):
    """Integer dot products equal numpy's, for all rows or a row list, any block range, extreme values; the
    plain-C builds (CPUs without VNNI) give the same integers."""
    if flags is not None:
        if flags and native._simd()[1] == []:
            pytest.skip("this CPU has no AVX2")
        monkeypatch.setattr(native, "_simd", lambda: ("plain C", flags))
        native._library.cache_clear()
        monkeypatch.setattr(native, "_library", native._library.__wrapped__)
    rng = np.random.default_rng(10)
    values = rng.integers(0, 16, (300, 640))
    values[:3] = 15  # the largest magnitudes
    plane = exact.pack_nibbles(values, 320)
    np.testing.assert_array_equal(unpacked(plane), values)
    queries = rng.integers(-127, 128, (2, 640)).astype(np.int8)
    queries[:, :128] = np.array([127, -127], dtype=np.int8)[:, None]
    for rows, blocks in ((None, (0, 5)), (np.array([299, 0, 7, 7, 150]), (1, 4)), (np.arange(0, 300, 3), (4, 5))):
        picked = values if rows is None else values[rows]
        span = slice(128 * blocks[0], 128 * blocks[1])
        for parts in (1, 2):
            out = np.empty((parts, len(picked)), dtype=np.int32)
            native.nibble_dots(plane, rows, blocks, queries[:parts], out)
            np.testing.assert_array_equal(out, queries[:parts, span].astype(np.int64) @ picked[:, span].T)


def test_the_query_encoding_is_within_its_rounding_term():
    query = np.random.default_rng(12).standard_normal(300).astype(np.float32)
    query[9] = 500.0
    code = exact.encode_query(query, 16, 200, 192)
    assert code.blocks == (0, 2) and not code.integers[:, :16].any() and not code.integers[:, 200:].any()
    approx = code.step * (code.integers[0] + code.integers[1] / 254.0)
    q = np.zeros(384)
    q[16:200] = query[16:200]
    assert np.abs(q - approx).sum() == pytest.approx(code.rounding_l1, rel=1e-12)
    assert np.abs(q - code.step * code.integers[0]).sum() == pytest.approx(code.coarse_rounding_l1, rel=1e-12)
    assert np.abs(q - approx).max() <= code.step / 508 * (1 + 1e-12)
    assert code.norm == pytest.approx(np.linalg.norm(q), rel=1e-14)


def test_any_basis_keeps_the_answers_exact_and_principal_directions_prune_shared_profiles(tmp_path, monkeypatch):
    """Real standardized profiles share one dominant direction (most samples are correct, with small gradients):
    the principal coefficients carry it, so far fewer rows are re-scored than with the codes alone. A random
    basis changes only how many, never the answers."""
    rng = np.random.default_rng(13)
    common = rng.standard_normal(CUTS[-1])
    matrix = (common + 0.05 * rng.standard_normal((500, CUTS[-1])) * rng.random((500, 1))).astype(np.float32)
    rescored = {}
    for name, basis in (("principal", exact.principal_directions),
                        ("none", lambda m: np.zeros((m.shape[1], 0))),
                        ("random", lambda m: np.linalg.qr(rng.standard_normal((m.shape[1], 8)))[0])):
        monkeypatch.setattr(exact, "principal_directions", basis)
        (tmp_path / name).mkdir()
        s = searcher(matrix, tmp_path / name)
        rescored[name] = 0
        for qid in (0, 100, 499):
            for layers in ((0, LAYERS), (2, 5)):
                got = s.search(matrix[qid], 10, layers, None)
                assert_same_top_k(got, float32_scan(s, matrix[qid], 10, layers, None))
                rescored[name] += got.rescored
        assert s._codes is not None
    assert rescored["principal"] < rescored["none"] / 2, rescored


def test_narrow_ranges_of_float32_rows_scan_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(exact, "FLOAT32_SCAN_DIMS", 100)
    matrix = clustered(n=300, seed=16)
    s = searcher(matrix, tmp_path)
    for layers, plain in (((0, 1), True), ((2, 3), True), ((1, 4), False)):  # 16, 56 and 104 filters
        got = s.search(matrix[9], 5, layers, None)
        assert (got.rescored == len(matrix)) == plain
        assert_same_top_k(got, float32_scan(s, matrix[9], 5, layers, None))


def test_without_a_compiled_kernel_queries_scan_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "_library", lambda: None)
    matrix = clustered(n=200, seed=14)
    s = searcher(matrix, tmp_path)
    got = s.search(matrix[4], 6, (1, 4), None)
    assert got.rescored == len(matrix) and not s.use_codes and list(tmp_path.iterdir()) == []
    assert_same_top_k(got, float32_scan(s, matrix[4], 6, (1, 4), None))
    built = searcher(matrix, tmp_path)
    built.prepare()  # as the precompute job does (the dir may be served where a compiler is)
    assert (tmp_path / exact.CODES).is_file() and built.search(matrix[4], 6, (1, 4), None).rescored == len(matrix)


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
    """``Artifacts.neighbors`` answers exactly as the float32 scan when the copy is in use."""
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
