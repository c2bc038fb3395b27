"""The precompute job on CUDA gives the CPU's results (up to float32 rounding)."""

import numpy as np
import pytest

from backend.store import Artifacts
from precompute.job import run_precompute
from tests.precompute.tiny import SyntheticDataset, build_artifacts, tiny_model


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path):
    build_artifacts(tmp_path / "cpu", n=64)
    run_precompute(tiny_model().cuda(), SyntheticDataset(64), tmp_path / "cuda", model_spec="tiny",
                   data_spec="synthetic", batch_size=16, shard_size=32, show_progress=False)
    cpu, cuda = Artifacts.open(tmp_path / "cpu"), Artifacts.open(tmp_path / "cuda")
    for name in ("profiles_raw", "features", "probs"):
        a, b = np.asarray(getattr(cpu, name)), np.asarray(getattr(cuda, name))
        assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(a), name
    np.testing.assert_array_equal(cpu.preds, cuda.preds)
