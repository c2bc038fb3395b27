"""What is being served: model, dataset, layers, accuracy; and dataset-wide aggregates."""

from fastapi import APIRouter, Depends

from ..deps import get_service
from ..schemas import InfoOut, SummaryOut
from ..service import Service

router = APIRouter(tags=["info"])


@router.get("/info", response_model=InfoOut, summary="model, dataset, filter layout and accuracy")
def info(service: Service = Depends(get_service)) -> dict:
    return service.info()


@router.get("/summary", response_model=SummaryOut, summary="confusion matrix and mean profiles (correct vs mistakes)")
def summary(service: Service = Depends(get_service)) -> dict:
    return service.summary()
