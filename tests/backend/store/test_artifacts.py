"""Artifacts.open validation and neighbour search against brute-force numpy cosine search."""

import json
import shutil

import numpy as np
import pytest

from backend.errors import PSSError
from backend.models import weights_sha256
from backend.saliency import FilterLayout
from backend.store import Artifacts
from tests.precompute.tiny import build_artifacts, small_demo_checkpoint


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts") / "flat"
    model, dataset, _ = build_artifacts(out, n=120)
    return out, model, dataset


@pytest.fixture
def artifacts(built):
    return Artifacts.open(built[0])


@pytest.fixture
def broken(built, tmp_path):
    """A private copy of the artifacts dir, free to damage."""
    copy = tmp_path / "copy"
    shutil.copytree(built[0], copy)
    return copy


def brute_force(matrix, query, *, exclude=None, allowed=None, k=10):
    """Exact cosine top-k in float64, the obvious way."""
    matrix = np.asarray(matrix, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    scores = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    mask = np.ones(len(scores), bool) if allowed is None else allowed.copy()
    if exclude is not None:
        mask[exclude] = False
    ids = np.flatnonzero(mask)
    order = ids[np.argsort(-scores[ids], kind="stable")][:k]
    return order.tolist(), scores[order]


def test_open_exposes_consistent_arrays(artifacts, built):
    _, model, dataset = built
    n = len(dataset)
    assert artifacts.num_samples == n == artifacts.manifest.num_samples
    assert artifacts.layout == FilterLayout.from_model(model)
    assert artifacts.profiles_raw.shape == artifacts.profiles_std.shape == (n, artifacts.layout.num_filters)
    assert isinstance(artifacts.profiles_std, np.memmap)
    np.testing.assert_array_equal(artifacts.labels, dataset.labels.numpy())
    np.testing.assert_array_equal(artifacts.correct, artifacts.labels == artifacts.preds)
    assert artifacts.class_names == dataset.class_names
    assert artifacts.model_spec == "tiny" and artifacts.data_spec == "synthetic"
    assert artifacts.accuracy == pytest.approx(artifacts.correct.mean())
    # The stored prefix norms are the per-layer-boundary sums of squares of profiles_std.
    boundaries = [s.start for s in artifacts.layout.spans] + [artifacts.layout.num_filters]
    cumulative = np.cumsum(np.asarray(artifacts.profiles_std, np.float64) ** 2, axis=1)
    expected = np.concatenate([np.zeros((n, 1)), cumulative], axis=1)[:, boundaries]
    np.testing.assert_allclose(artifacts.profile_norms, expected, rtol=1e-12)


@pytest.mark.parametrize("sample", [0, 37, 119])
def test_full_profile_neighbours_equal_brute_force(artifacts, sample):
    hits = artifacts.neighbors(sample, k=10)
    ids, scores = brute_force(artifacts.profiles_std, artifacts.profiles_std[sample], exclude=sample)
    assert [h["id"] for h in hits] == ids
    np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-5)


@pytest.mark.parametrize("layers", [(0, 1), (1, 3), (2, 3), (0, 3)])
def test_layer_range_neighbours_equal_brute_force(artifacts, layers):
    start, stop = artifacts.layout.filter_range(*layers)
    for sample in (3, 64):
        hits = artifacts.neighbors(sample, k=7, layers=layers)
        ids, scores = brute_force(artifacts.profiles_std[:, start:stop], artifacts.profiles_std[sample, start:stop],
                                  exclude=sample, k=7)
        assert [h["id"] for h in hits] == ids
        np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-5)


def test_mean_profile_is_the_mean_of_the_rows_across_read_blocks(artifacts, monkeypatch):
    monkeypatch.setattr("backend.store.artifacts.MEAN_BLOCK_ROWS", 7)  # 50 ids: several blocks and a partial one
    ids = np.random.default_rng(0).choice(artifacts.num_samples, 50, replace=False)
    expected = np.asarray(artifacts.profiles_std[np.sort(ids)], dtype=np.float64).mean(axis=0)
    np.testing.assert_allclose(artifacts.mean_profile(ids), expected, rtol=1e-12, atol=1e-12)


def test_layer_range_differs_from_full_profile(artifacts):
    """Guards the tests above against a range silently ignored."""
    assert [h["id"] for h in artifacts.neighbors(5, k=10)] != [h["id"] for h in artifacts.neighbors(5, k=10, layers=(0, 1))]


def test_misclassified_only(artifacts):
    wrong = ~artifacts.correct
    hits = artifacts.neighbors(11, k=12, misclassified_only=True)
    ids, _ = brute_force(artifacts.profiles_std, artifacts.profiles_std[11], exclude=11, allowed=wrong, k=12)
    assert [h["id"] for h in hits] == ids
    assert all(wrong[h["id"]] for h in hits)
    ranged = artifacts.neighbors(11, k=5, layers=(1, 3), misclassified_only=True)
    assert ranged and all(wrong[h["id"]] for h in ranged)


def test_feature_space(artifacts):
    hits = artifacts.neighbors(20, k=6, space="feature")
    ids, scores = brute_force(artifacts.features, artifacts.features[20], exclude=20, k=6)
    assert [h["id"] for h in hits] == ids
    np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-5)


def test_vector_query_excludes_nothing(artifacts):
    """An upload's profile is not a dataset sample: identical stored profile comes first with cosine 1."""
    hits = artifacts.neighbors(np.asarray(artifacts.profiles_std[42]), k=3)
    assert hits[0]["id"] == 42 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    ids, _ = brute_force(artifacts.profiles_std, artifacts.profiles_std[42], k=3)
    assert [h["id"] for h in hits] == ids


def test_k_larger_than_candidates(artifacts):
    assert len(artifacts.neighbors(0, k=10_000)) == artifacts.num_samples - 1


def test_flat_faiss_index_matches_exact_path(artifacts, built):
    import faiss

    index = faiss.read_index(str(built[0] / "index.faiss"))
    query = np.asarray(artifacts.profiles_std[9], np.float32)[None]
    _, ids = index.search(query / np.linalg.norm(query), 11)
    assert [i for i in ids[0] if i != 9][:10] == [h["id"] for h in artifacts.neighbors(9, k=10)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query": 10_000}, "out of range"),
        ({"query": [1.0, 2.0]}, "needs 16 values"),
        ({"query": [float("nan")] * 16}, "NaN"),
    ],
)
def test_bad_queries(artifacts, kwargs, message):
    with pytest.raises(PSSError, match=message):
        artifacts.neighbors(**kwargs)


# --------------------------------------------------------------------------------- damaged artifacts
def test_missing_manifest(broken):
    (broken / "manifest.json").unlink()
    with pytest.raises(PSSError, match="manifest.json is missing"):
        Artifacts.open(broken)


def test_missing_dir(tmp_path):
    with pytest.raises(PSSError, match="does not exist"):
        Artifacts.open(tmp_path / "nowhere")


def test_garbage_manifest(broken):
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(PSSError, match="manifest.json is unreadable"):
        Artifacts.open(broken)


@pytest.mark.parametrize("name", ["profiles_std.npy", "profiles_raw.npy", "features.npy", "predictions.npz", "index.faiss"])
def test_truncated_file_is_named(broken, name):
    path = broken / name
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PSSError, match=name.replace(".", r"\.") + ".*truncated"):
        Artifacts.open(broken)


def test_missing_file_is_named(broken):
    (broken / "stats.npz").unlink()
    with pytest.raises(PSSError, match=r"stats\.npz is missing"):
        Artifacts.open(broken)


def test_swapped_array_is_caught(broken):
    """Same byte size, different shape: the header check catches it."""
    manifest = json.loads((broken / "manifest.json").read_text())
    n, f = manifest["files"]["profiles_std.npy"]["shape"]
    np.save(broken / "profiles_std.npy", np.zeros((f, n), np.float32))
    manifest["files"]["profiles_std.npy"]["bytes"] = (broken / "profiles_std.npy").stat().st_size
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PSSError, match=r"profiles_std\.npy holds"):
        Artifacts.open(broken)


def test_check_matches(artifacts, built):
    _, model, dataset = built
    digest, layout, fingerprint = weights_sha256(model), FilterLayout.from_model(model), dataset.fingerprint()
    artifacts.check_matches("tiny", digest, layout, fingerprint)  # the real thing passes
    with pytest.raises(PSSError, match="stale.*weights sha256"):
        artifacts.check_matches("tiny", "0" * 64, layout, fingerprint)
    with pytest.raises(PSSError, match="stale: dataset"):
        artifacts.check_matches("tiny", digest, layout, "f" * 64)
    with pytest.raises(PSSError, match="are for model 'tiny', not 'other'"):
        artifacts.check_matches("other", digest, layout, fingerprint)
    with pytest.raises(PSSError, match="different filter layout"):
        artifacts.check_matches("tiny", digest, FilterLayout(list(layout.spans[:2])), fingerprint)


def test_cli_reports_broken_artifacts_in_one_line(broken, tmp_path, capsys, keep_torch_threads):
    """`pss precompute` on a damaged dir explains itself on one line instead of a traceback."""
    from backend.cli import main

    spec = small_demo_checkpoint(tmp_path / "demo.pt")
    (broken / "features.npy").write_bytes(b"\x93NUMPY")
    assert main(["precompute", "--model", spec, "--out", str(broken), "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "features.npy" in err and "--force" in err


def test_concurrent_queries_agree_with_serial_ones(artifacts):
    """The API serves from many threads: shared memory maps, lazily built caches and BLAS must not interfere."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(i % 120, layers, space) for i in range(0, 240, 7)
            for layers, space in ((None, "saliency"), ((1, 3), "saliency"), (None, "feature"))]
    fresh = Artifacts.open(artifacts.directory)  # its feature cache is built under contention
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda job: fresh.neighbors(job[0], k=5, layers=job[1], space=job[2]), jobs))
    assert parallel == [artifacts.neighbors(i, k=5, layers=layers, space=space) for i, layers, space in jobs]
