"""--params and preprocessing: recorded in the manifest, part of the job only where they differ from what the
model spec gives (so older dirs keep their key), and used again by every consumer through open_run."""

from __future__ import annotations

import inspect

import pytest
import torch

from backend.data import load_dataset
from backend.errors import PSSError
from backend.models import load_model, model_input_spec
from backend.saliency import FilterLayout
from backend.store import filter_layout, open_run
from precompute.job import run_precompute
from tests.backend.api.conftest import tiny_model

DATA = "fashion-mnist:test"
ENGINE_HAS_LINEAR = "params" in inspect.signature(FilterLayout.from_model).parameters


class WithoutPreprocess(torch.utils.data.Dataset):
    """The same samples, as a dataset that says nothing about its preprocessing (as before the field)."""

    def __init__(self, dataset):
        self.inner = dataset
        self.class_names = dataset.class_names
        self.fingerprint = dataset.fingerprint
        self.tensors = dataset.tensors

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        return self.inner[index]


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("settings") / "tiny.pt"
    torch.save(tiny_model().state_dict(), path)
    return f"checkpoint:{path}:demo"


def _run(spec, out, input_spec=None, **kwargs):
    return run_precompute(load_model(spec), load_dataset(DATA, spec, input_spec), out, model_spec=spec, data_spec=DATA,
                          limit=8, batch_size=8, shard_size=8, show_progress=False, **kwargs)


def test_the_specs_own_preprocessing_keeps_the_old_job_key(spec, tmp_path):
    recorded = _run(spec, tmp_path / "new")
    assert recorded.preprocess == model_input_spec(spec) and recorded.params == "conv"
    legacy = run_precompute(load_model(spec), WithoutPreprocess(load_dataset(DATA, spec)), tmp_path / "old",
                            model_spec=spec, data_spec=DATA, limit=8, batch_size=8, shard_size=8, show_progress=False)
    assert legacy.preprocess is None
    assert recorded.job_key == legacy.job_key


def test_other_preprocessing_is_another_job_and_open_run_uses_what_was_recorded(spec, tmp_path):
    out = tmp_path / "a"
    smaller = model_input_spec(spec).with_overrides(input_size=24)
    manifest = _run(spec, out, smaller)
    assert manifest.preprocess == smaller and manifest.preprocess.source == "flags"
    with pytest.raises(PSSError, match="holds artifacts of another job"):
        _run(spec, out)  # the spec's own 28x28 preprocessing
    run = open_run(out, "cpu")
    assert run.dataset.preprocess.spec == smaller
    assert run.dataset[0][0].shape == (1, 24, 24)


def test_params_other_than_conv(spec, tmp_path):
    model = load_model(spec)
    with pytest.raises(PSSError, match="unknown --params 'all'"):
        filter_layout(model, "all")
    if not ENGINE_HAS_LINEAR:
        with pytest.raises(PSSError, match="--params linear needs Linear-layer filters.*use --params conv"):
            _run(spec, tmp_path / "linear", params="linear")
        return
    manifest = _run(spec, tmp_path / "linear", params="conv+linear")
    assert manifest.params == "conv+linear" and manifest.layout.layers[-1][0] == "fc.weight"
    assert open_run(tmp_path / "linear", "cpu").artifacts.layout == manifest.layout
