"""How typical an upload is of the dataset (``backend.store.typicality``): the number behind the UI's
out-of-distribution notice."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from backend.store.typicality import reference_similarities, typicality

from ..deps import get_upload
from ..service import Subject

router = APIRouter(prefix="/uploads", tags=["uploads"])
_LOCK = threading.Lock()


def _reference(request: Request):
    """The dataset's own nearest-neighbour similarities, computed once per app on first use."""
    state = request.app.state
    with _LOCK:
        if getattr(state, "typicality_reference", None) is None:
            state.typicality_reference = reference_similarities(state.service.artifacts.features)
        return state.typicality_reference


@router.get(
    "/{upload_id}/typicality",
    summary="nearest-neighbour cosine similarity in feature space, as a percentile of the dataset's own",
)
async def upload_typicality(request: Request, subject: Subject = Depends(get_upload)) -> dict:
    features = request.app.state.service.artifacts.features
    reference = await run_in_threadpool(_reference, request)
    answer = await run_in_threadpool(typicality, features, reference, subject.features)
    return {**answer, "statistic": "nearest-neighbour cosine similarity of the penultimate features"}
