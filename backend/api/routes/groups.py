"""What-ifs on a group of samples: prune or fine-tune the filters it shares, and download the patched weights."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, Response

from .. import groups
from ..analysis import AnalysisService
from ..deps import get_analysis, get_service
from ..jobs import Busy
from ..schemas_whatif import ExportIn, GroupIn, GroupOut
from ..service import Service
from .views import BODY_ERRORS

router = APIRouter(prefix="/groups", tags=["groups"])
BUSY = {409: {"description": "the whole-dataset evaluation of an earlier request is still running"}}


@router.post("/prune", response_model=GroupOut, responses={**BODY_ERRORS, **BUSY},
             summary="switch off the group's shared filters: group, neighbours and dataset accuracy before/after")
async def prune(body: GroupIn = Body(...), service: Service = Depends(get_service),
                analysis: AnalysisService = Depends(get_analysis)) -> dict:
    return await _intervene(service, analysis, "prune", body)


@router.post("/finetune", response_model=GroupOut, responses={**BODY_ERRORS, **BUSY},
             summary="one gradient step of the group's loss on its shared filters: accuracies before/after")
async def finetune(body: GroupIn = Body(...), service: Service = Depends(get_service),
                   analysis: AnalysisService = Depends(get_analysis)) -> dict:
    return await _intervene(service, analysis, "finetune", body)


@router.post("/export", response_class=Response,
             responses={**BODY_ERRORS, 200: {"content": {"application/octet-stream": {}}}},
             summary="the patched weights as a safetensors state dict (load with checkpoint:PATH:ARCH)")
async def export(body: ExportIn = Body(...), service: Service = Depends(get_service),
                 analysis: AnalysisService = Depends(get_analysis)) -> Response:
    data = await groups.export(service, analysis, body)
    name = f"pss-{body.intervention}-top{body.top_k}-{body.mode}.safetensors"
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _intervene(service: Service, analysis: AnalysisService, intervention: str, body: GroupIn) -> dict:
    try:
        return await groups.intervene(service, analysis, intervention, body)
    except Busy as exc:
        raise HTTPException(409, str(exc)) from None
