"""User uploads: POST an image, then the same views as a sample under /api/uploads/{upload_id}."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from ..deps import get_service, get_upload
from ..schemas import ErrorOut, UploadOut
from ..service import Service
from .views import BODY_ERRORS, add_views

router = APIRouter(prefix="/uploads", tags=["uploads"])


@router.post(
    "",
    response_model=UploadOut,
    summary="upload a PNG/JPEG/WebP image (optional true label); returns its id and prediction",
    responses={
        **BODY_ERRORS,
        413: {"model": ErrorOut, "description": "body over the size cap, or an image with too many pixels"},
        415: {"model": ErrorOut, "description": "not a PNG, JPEG or WebP image"},
    },
)
async def create_upload(
    file: UploadFile = File(..., description="PNG, JPEG or WebP; animated images use their first frame"),
    label: int | None = Form(None, ge=0, description="true class, if known (else the prediction is used)"),
    service: Service = Depends(get_service),
) -> dict:
    data = await file.read()
    tensor, display = await run_in_threadpool(service.decode, data)
    subject = await service.add_upload(tensor, display, label)
    return {"id": subject.id, "pred": subject.pred, "probs": subject.probs.tolist(), "label": subject.label}


add_views(router, "/{upload_id}", get_upload, "upload")
