"""Dataset samples: listing with filters, and the per-image views."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query

from ..deps import get_sample, get_service
from ..schemas import SampleList
from ..service import Service
from .views import add_views

router = APIRouter(prefix="/samples", tags=["samples"])


@router.get("", response_model=SampleList, summary="samples filtered by correctness and classes, paged")
def list_samples(
    correct: bool | None = Query(None, description="only correctly (true) or wrongly (false) classified samples"),
    true_class: int | None = Query(None, ge=0),
    pred_class: int | None = Query(None, ge=0),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=1000),
    sort: Literal["id", "loss", "confidence"] = Query("id", description="loss/confidence: highest first"),
    service: Service = Depends(get_service),
) -> dict:
    return service.list_samples(correct, true_class, pred_class, offset, limit, sort)


add_views(router, "/{sample_id}", get_sample, "sample")
