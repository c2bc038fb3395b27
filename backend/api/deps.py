"""FastAPI dependencies: the service held by the app, and path ids resolved to subjects."""

from __future__ import annotations

from fastapi import Depends, Path, Request

from .analysis import AnalysisService
from .service import Service, Subject


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_analysis(request: Request) -> AnalysisService:
    """One ``AnalysisService`` per app, made on first use (it loads the arrays lazily itself)."""
    state = request.app.state
    if getattr(state, "analysis", None) is None:
        state.analysis = AnalysisService(get_service(request).artifacts)
    return state.analysis


def get_sample(
    sample_id: int = Path(ge=0, description="row number in the artifacts dir"), service: Service = Depends(get_service)
) -> Subject:
    return service.sample(sample_id)


def get_upload(
    upload_id: int = Path(ge=0, description="id returned by POST /api/uploads"), service: Service = Depends(get_service)
) -> Subject:
    return service.upload(upload_id)
