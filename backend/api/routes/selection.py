"""A selection of samples (a lasso on the map of the mistakes): the filters its members share."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..analysis import AnalysisService
from ..analysis_schemas import SelectionFiltersOut, SelectionIn
from ..deps import get_analysis
from .views import BODY_ERRORS

router = APIRouter(tags=["analysis"])


@router.post("/selection/filters", response_model=SelectionFiltersOut, responses=BODY_ERRORS,
             summary="the filters a set of samples shares: mean standardized saliency over the set, best first")
def selection_filters(body: SelectionIn, analysis: AnalysisService = Depends(get_analysis)) -> dict:
    return analysis.selection_filters(body.sample_ids, body.top)
