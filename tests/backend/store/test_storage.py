"""16-bit storage: rounding and range of each format, slices read back as float32, old manifests read as
float32, and exact search over float16 rows exact with respect to the stored values."""

import numpy as np
import pytest

from backend.errors import PSSError
from backend.store import exact, search, storage
from backend.store.manifest import Manifest, StorageRecord

from .test_exact import CUTS, assert_same_top_k, clustered


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_rounding_is_to_nearest_within_half_an_ulp(fmt):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(20_000) * np.exp(rng.uniform(-9, 4, 20_000))).astype(np.float32)
    back = storage.decode(storage.encode(values, fmt, "x"), fmt)
    assert back.dtype == np.float32
    normal = np.abs(values) >= (6.2e-5 if fmt == "float16" else 1.2e-38)
    relative = np.abs(back - values)[normal] / np.abs(values)[normal]
    assert relative.max() <= storage.unit_roundoff(fmt)
    assert relative.max() > storage.unit_roundoff(fmt) / 2  # the bound is tight, not loose by a factor


def test_bfloat16_keeps_tiny_saliencies_that_float16_loses():
    tiny = np.array([3e-9, 1e-7, 2e-6], dtype=np.float32)
    assert np.all(storage.decode(storage.encode(tiny, "bfloat16", "x"), "bfloat16") > 0)
    np.testing.assert_allclose(storage.decode(storage.encode(tiny, "bfloat16", "x"), "bfloat16"), tiny, rtol=2.0**-8)
    assert storage.decode(storage.encode(tiny, "float16", "x"), "float16")[0] == 0


def test_float16_overflow_is_a_clear_error():
    with pytest.raises(PSSError, match="beyond float16's range.*--dtype float32"):
        storage.encode(np.array([1.0, 7e4], np.float32), "float16", "features")


def test_stored_rows_read_slices_as_float32(tmp_path):
    values = clustered(n=50)
    path = tmp_path / "rows.npy"
    np.save(path, storage.encode(values, "bfloat16", "x"))
    rows = storage.open_rows(np.load(path, mmap_mode="r"), "bfloat16")
    expected = storage.decode(np.load(path), "bfloat16")
    assert rows.shape == values.shape and rows.nbytes == values.nbytes // 2
    for key in (3, slice(4, 9), (np.array([1, 7, 30]), slice(16, 40))):
        assert rows[key].dtype == np.float32
        np.testing.assert_array_equal(rows[key], expected[key])
    np.testing.assert_array_equal(np.asarray(rows, dtype=np.float64), expected)
    float32 = np.load(path, mmap_mode="r")
    assert storage.open_rows(float32, "float32") is float32


def test_manifests_without_a_storage_record_are_float32():
    assert StorageRecord() == StorageRecord("float32", "float32", "float32")
    assert StorageRecord.for_dtype("float16") == StorageRecord("bfloat16", "float16", "float16")
    with pytest.raises(ValueError, match="storage.features"):
        StorageRecord(features="int8")
    doc = {"created": "c", "job_key": "k", "model": {"spec": "m", "weights_sha256": "w", "dtype": "torch.float32"},
           "data": {"spec": "d", "fingerprint": "f", "limit": None}, "num_samples": 2, "num_classes": 2,
           "feature_dim": 3, "class_names": ["a", "b"], "accuracy": 0.5,
           "layout": {"layers": [{"name": "w", "start": 0, "stop": 4, "shape": [4, 1, 1, 1]}]},
           "engine": {"batch_size": 1, "shard_size": 1, "feature_layer": "fc"}, "index": {"kind": "flat"},
           "versions": {}, "files": {}}
    old = Manifest.from_json(doc)
    assert old.storage == StorageRecord()
    half = Manifest.from_json({**old.to_json(), "storage": {"profiles_raw": "bfloat16", "profiles_std": "float16",
                                                            "features": "float16"}})
    assert half.storage == StorageRecord.for_dtype("float16") and half.to_json()["storage"]["profiles_std"] == "float16"


@pytest.mark.parametrize("layers", [(0, 6), (1, 3), (5, 6)])
def test_exact_search_over_float16_rows_is_exact_for_the_stored_values(tmp_path, monkeypatch, layers):
    """codes + float32 re-rank of float16 rows == a float64 brute force over the stored values."""
    monkeypatch.setattr(exact, "FLOAT32_SCAN_DIMS", 10**6)  # however narrow, 16-bit ranges take the codes
    path = tmp_path / "profiles_std.npy"
    np.save(path, storage.encode(clustered(), "float16", "x"))
    rows = storage.open_rows(np.load(path, mmap_mode="r"), "float16")
    stored = np.load(path).astype(np.float64)  # the stored values, exactly
    prefix = search.prefix_squares(rows, CUTS)
    np.testing.assert_array_equal(prefix[:, -1], (stored**2).sum(axis=1))
    found = exact.ExactSearch(rows, prefix, CUTS, tmp_path, "t", min_bytes=0)
    a, b = CUTS[layers[0]], CUTS[layers[1]]
    for qid in (0, 17, 301):
        allowed = np.ones(len(stored), dtype=bool)
        allowed[qid] = False
        got = found.search(rows[qid], 10, layers, allowed)
        assert got.rescored < len(stored)  # the codes did the work
        x, q = stored[:, a:b], stored[qid, a:b]
        cosine = x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
        assert_same_top_k(got, search.top_k(cosine, 10, allowed))
