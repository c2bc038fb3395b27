"""Opening an artifacts dir for serving: ``backend.store.open_run`` with the server's settings."""

from __future__ import annotations

import logging

import torch

from backend.store import open_run

from .service import Service
from .settings import Settings

log = logging.getLogger(__name__)


def load_service(settings: Settings) -> Service:
    """Raises ``PSSError`` (one line) for a missing, unfinished, stale or foreign artifacts dir."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    run = open_run(settings.artifacts, settings.device, check=settings.check_artifacts)
    log.info("serving %r on %s: model %s, %s", str(settings.artifacts), run.device, run.artifacts.model_spec,
             run.dataset)
    return Service(settings, run)
