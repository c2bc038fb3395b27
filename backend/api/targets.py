"""``?target=CLASS``: a subject's profile taken against another class ("why not class X?").

Every per-image view depends on ``targeted(subject)`` instead of the plain subject: without ``target`` (or with
the true label) it is the stored subject; otherwise the profile is recomputed on the compute worker with the
loss against ``CLASS`` and cached, and the subject says so (``target_source``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from fastapi import Depends, Query

from backend.saliency import filter_saliency

from .deps import get_service
from .service import Invalid, Service, Subject


def target_headers(s: Subject) -> dict[str, str]:
    """The target as headers, for answers that are not JSON objects (PNG images, lists)."""
    return {"X-Target-Class": str(s.saliency_label), "X-Target-Source": s.target_source}


def targeted(subject: Callable[..., Subject]) -> Callable[..., Subject]:
    """A dependency: ``subject`` with its profile against ``?target=`` when given."""

    async def dependency(
        s: Subject = Depends(subject),
        target: int | None = Query(None, ge=0, description="explain against this class instead of the true label "
                                                           "(uploads without a label: the predicted class)"),
        service: Service = Depends(get_service),
    ) -> Subject:
        return await retarget(service, s, target)

    return dependency


async def retarget(service: Service, s: Subject, target: int | None) -> Subject:
    if target is None or target == s.saliency_label:
        return s
    num_classes = len(service.class_names)
    if not 0 <= target < num_classes:
        raise Invalid(f"target must be in [0, {num_classes - 1}], got {target}")
    if target == s.label:
        return service.sample(s.id) if s.kind == "sample" else service.upload(s.id)
    key = ("target-profile", s.kind, s.id, target)
    raw = service.results.get(key)
    if raw is None:
        raw = await service.worker.run(_profile_job, service, s, target)
        service.results.put(key, raw)
    source = "predicted" if target == s.pred else "chosen"
    return dataclasses.replace(s, saliency_label=target, raw=raw, z=service.stats.standardize(raw),
                               target_source=source)


def _profile_job(service: Service, s: Subject, target: int) -> np.ndarray:
    x = service._image(s)[None].to(service.device)
    raw = filter_saliency(service.model, x, torch.tensor([target], device=service.device), layout=service.layout)
    return raw[0].float().cpu().numpy()
