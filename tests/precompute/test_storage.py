"""`pss precompute --dtype float16` and the int8 search copy made by the job: what is written, what the
manifest says, and that a served dir finds the copy instead of building it on the first query."""

import numpy as np
import pytest

from backend.errors import PSSError
from backend.store import Artifacts, exact, storage

from .tiny import build_artifacts


def test_half_storage_holds_the_float32_values_rounded(tmp_path):
    build_artifacts(tmp_path / "full")
    _, _, manifest = build_artifacts(tmp_path / "half", dtype="float16")
    full, half = Artifacts.open(tmp_path / "full"), Artifacts.open(tmp_path / "half")
    assert manifest.storage == half.manifest.storage and half.manifest.storage.features == "float16"
    assert manifest.files["profiles_raw.npy"]["dtype"] == "<u2" and manifest.files["profiles_std.npy"]["dtype"] == "<f2"
    for name, fmt in (("profiles_raw", "bfloat16"), ("profiles_std", "float16"), ("features", "float16")):
        stored, want = getattr(half, name), getattr(full, name)
        assert stored.nbytes * 2 == want.nbytes
        expected = storage.decode(storage.encode(np.asarray(want), fmt, name), fmt)
        np.testing.assert_array_equal(np.asarray(stored), expected)  # round to nearest, nothing else
    cumulative = np.cumsum(np.asarray(half.profiles_std, np.float64) ** 2, axis=1)
    np.testing.assert_allclose(half.profile_norms[:, -1], cumulative[:, -1], rtol=1e-12)  # of the stored values
    with pytest.raises(PSSError, match="storage of the profiles float16"):
        build_artifacts(tmp_path / "half")  # the same job in float32 does not pass for the float16 dir


def test_the_job_writes_the_int8_search_copy_before_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(exact, "MIN_BYTES", 0)
    _, _, manifest = build_artifacts(tmp_path / "a", dtype="float16")
    codes = tmp_path / "a" / exact.CODES
    assert codes.is_file() and (tmp_path / "a" / exact.BOUNDS).is_file()
    assert codes.stat().st_mtime_ns <= (tmp_path / "a" / "manifest.json").stat().st_mtime_ns
    written = codes.stat().st_mtime_ns
    artifacts = Artifacts.open(tmp_path / "a")
    found = artifacts.exact.search(artifacts.profiles_std[3], 5, (0, len(artifacts.layout)), None)
    assert artifacts.exact._codes is not None and codes.stat().st_mtime_ns == written  # found, not rebuilt
    assert found.rescored <= artifacts.num_samples


def test_small_profiles_get_no_copy(tmp_path):
    build_artifacts(tmp_path / "a")
    assert not (tmp_path / "a" / exact.CODES).exists()
