"""Opening an artifacts dir for serving: model on its device, dataset, and the check that they all match."""

from __future__ import annotations

import logging

import torch

from backend.errors import PSSError

from .service import Service
from .settings import Settings

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PSSError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def load_service(settings: Settings) -> Service:
    """Raises ``PSSError`` (one line) for a missing, unfinished, stale or foreign artifacts dir."""
    from backend.data import load_dataset
    from backend.models import load_model, weights_sha256
    from backend.saliency import FilterLayout
    from backend.store import Artifacts

    artifacts = Artifacts.open(settings.artifacts)
    device = resolve_device(settings.device)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    model = load_model(artifacts.model_spec, device)
    dataset = load_dataset(artifacts.data_spec, artifacts.model_spec)
    digest = weights_sha256(model)
    if settings.check_artifacts:
        artifacts.check_matches(artifacts.model_spec, digest, FilterLayout.from_model(model), dataset.fingerprint())
    if len(dataset) < artifacts.num_samples:
        raise PSSError(
            f"artifacts in {settings.artifacts} hold {artifacts.num_samples} samples but dataset "
            f"{artifacts.data_spec!r} has only {len(dataset)}; rerun `pss precompute --force`"
        )
    log.info("serving %r on %s: model %s, %s", str(settings.artifacts), device, artifacts.model_spec, dataset)
    return Service(settings, artifacts, model, dataset, device, weights_sha256=digest)
