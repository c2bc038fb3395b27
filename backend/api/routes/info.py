"""What is being served: model, dataset, layers, accuracy."""

from fastapi import APIRouter, Depends

from ..deps import get_service
from ..schemas import InfoOut
from ..service import Service

router = APIRouter(tags=["info"])


@router.get("/info", response_model=InfoOut, summary="model, dataset, filter layout and accuracy")
def info(service: Service = Depends(get_service)) -> dict:
    return service.info()
