"""Filters, confusions, the map of the mistakes, failure modes and the per-sample export (issue 12)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Response

from ..analysis import AnalysisService
from ..analysis_schemas import ConfusionOut, FailureModeOut, FilterDistributionOut, FilterPageOut, MapColumnsOut, MapOut
from ..deps import get_analysis

router = APIRouter(tags=["analysis"])


@router.get("/filters/{index}", response_model=FilterPageOut, summary="a filter: reference samples, classes, confusions")
def filter_page(index: int = Path(ge=0, description="filter id"), analysis: AnalysisService = Depends(get_analysis)) -> dict:
    return analysis.filter_page(index)


@router.get("/filters/{index}/distribution", response_model=FilterDistributionOut,
            summary="a filter's standardized saliency over the correct and the misclassified samples (histogram)")
def filter_distribution(
    index: int = Path(ge=0, description="filter id"),
    bins: int = Query(40, ge=1, description="number of histogram bins (at most 200)"),
    analysis: AnalysisService = Depends(get_analysis),
) -> dict:
    return analysis.filter_distribution(index, bins)


@router.get("/confusions/{true_class}/{pred_class}", response_model=ConfusionOut,
            summary="the mistakes of one (true, predicted) pair and the filters they share")
def confusion(
    true_class: int = Path(ge=0), pred_class: int = Path(ge=0),
    top: int = Query(20, ge=1, description="how many filters (at most the model's filter count)"),
    profile: bool = Query(False, description="also the pair's whole mean profile and its true class's"),
    analysis: AnalysisService = Depends(get_analysis),
) -> dict:
    return analysis.confusion(true_class, pred_class, top, profile)


@router.get("/map", response_model=MapOut | MapColumnsOut, summary="2-D map of every misclassified sample")
def mistake_map(
    space: str = Query("saliency", description="saliency | feature"),
    fmt: str = Query("points", alias="format", description="points (one object per mistake) | columns (one array "
                                                          "per field, with label and pred; less than half the bytes)"),
    analysis: AnalysisService = Depends(get_analysis),
) -> Response:
    return Response(analysis.mistake_map(space, fmt), media_type="application/json")


@router.get("/failure-modes", response_model=list[FailureModeOut], summary="clusters of the mistakes in saliency space")
def failure_modes(analysis: AnalysisService = Depends(get_analysis)) -> list[dict]:
    return analysis.failure_modes()


@router.get("/export.csv", response_class=Response, summary="one row per sample (the `pss export` table) as CSV",
            responses={200: {"content": {"text/csv": {}}, "description": "CSV table"}})
def export_csv(analysis: AnalysisService = Depends(get_analysis)) -> Response:
    return Response(analysis.export_csv(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="samples.csv"'})
