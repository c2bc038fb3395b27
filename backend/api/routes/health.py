"""Liveness and readiness."""

from fastapi import APIRouter, Depends

from ..deps import get_service
from ..schemas import HealthOut
from ..service import Service

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="liveness; `ready` once the model is warmed up")
def health(service: Service = Depends(get_service)) -> dict:
    return {"status": "ok", "ready": service.ready.is_set()}
