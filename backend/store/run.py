"""One way to open a run: an artifacts dir with its model (on one device) and its dataset, checked to match."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backend.data import load_dataset
from backend.errors import PSSError
from backend.models import load_model, resolve_device, weights_sha256
from backend.saliency import FilterLayout

from .artifacts import Artifacts
from .manifest import PARAMS


@dataclass(frozen=True)
class Run:
    artifacts: Artifacts
    model: nn.Module  # in eval mode on ``device``
    dataset: object  # backend.data dataset: (image tensor, label) by sample id
    device: torch.device
    weights_sha256: str


def open_run(directory: str | Path, device: str | torch.device = "auto", *, check: bool = True) -> Run:
    """Opens ``directory`` and loads the model and dataset its manifest names, the dataset preprocessed exactly as
    the manifest records (dirs written before that record: as the model spec gives).

    ``check`` (the default) refuses, with one line, artifacts made with other weights, another filter layout
    or another dataset; a dataset smaller than the artifacts is always refused.
    """
    artifacts = Artifacts.open(directory)
    manifest = artifacts.manifest
    device = resolve_device(device)
    model = load_model(artifacts.model_spec, device)
    dataset = load_dataset(artifacts.data_spec, artifacts.model_spec, manifest.preprocess)
    digest = weights_sha256(model)
    if check:
        artifacts.check_matches(artifacts.model_spec, digest, filter_layout(model, manifest.params),
                                dataset.fingerprint())
    if len(dataset) < artifacts.num_samples:
        raise PSSError(
            f"artifacts in {directory} hold {artifacts.num_samples} samples but dataset "
            f"{artifacts.data_spec!r} has only {len(dataset)}; rerun `pss precompute --force`"
        )
    return Run(artifacts, model, dataset, device, digest)


def filter_layout(model: nn.Module, params: str = "conv") -> FilterLayout:
    """The model's filters for ``--params`` (conv | linear | conv+linear); a model without any is one line."""
    if params not in PARAMS:
        raise PSSError(f"unknown --params {params!r}; choose one of {', '.join(PARAMS)}")
    try:
        return FilterLayout.from_model(model, params=params)
    except ValueError as exc:
        raise PSSError(f"{exc} (--params {params})") from exc
