"""Tiny artifacts for the experiments: a random narrow demo ResNet on 48 Fashion-MNIST test images, built by the
real precompute job under a checkpoint spec (so `pss experiments` can reload the model and data from it)."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
import torch

from tests.backend.api.conftest import tiny_model

NUM_SAMPLES = 48
DATA_SPEC = "fashion-mnist:test"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine, two spinning threads per process are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from backend.data import load_dataset
    from backend.models import load_model
    from precompute.job import run_precompute

    root = tmp_path_factory.mktemp("experiments")
    checkpoint = root / "tiny.pt"
    torch.save(tiny_model().state_dict(), checkpoint)
    spec = f"checkpoint:{checkpoint}:demo"
    out = root / "artifacts"
    run_precompute(load_model(spec, "cpu"), load_dataset(DATA_SPEC, spec), out, model_spec=spec, data_spec=DATA_SPEC,
                   limit=NUM_SAMPLES, batch_size=48, shard_size=48, show_progress=False)
    return out


def make_args(artifacts: Path, **overrides) -> Namespace:
    values = dict(artifacts=artifacts, which="all", limit=None, device="cpu", seed=0, batch_size=16, step_size=None,
                  noise_std=None, mask_percent=None, threads=1, no_progress=True, quick=False,
                  progress_lines=False)
    values.update(overrides)
    return Namespace(**values)


@pytest.fixture(scope="session")
def ctx(tiny_dir):
    """A loaded context over the tiny artifacts (results go to tiny_dir/experiments)."""
    from backend.experiments.cli import load_context

    return load_context(make_args(tiny_dir))


@pytest.fixture(scope="session")
def results_dir(tiny_dir, tmp_path_factory) -> Path:
    """A copy of the tiny artifacts with every experiment's results, from `pss experiments --limit 3`."""
    import shutil

    from backend.cli import main

    out = tmp_path_factory.mktemp("results") / "artifacts"
    shutil.copytree(tiny_dir, out, ignore=shutil.ignore_patterns("experiments"))
    assert main(["experiments", "--artifacts", str(out), "--limit", "3", "--no-progress"]) == 0
    return out
