"""What-ifs on one image, under both /api/samples/{id} and /api/uploads/{id}: mask its salient pixels, or take
one gradient step on its salient filters. ``?target=CLASS`` takes the loss against CLASS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Body, Depends, Query, Response

from .. import whatif
from ..deps import get_sample, get_service, get_upload
from ..schemas_whatif import FinetuneIn, FinetuneOut, MaskIn, MaskOut
from ..service import Service, Subject
from ..targets import target_headers, targeted
from .views import BODY_ERRORS, PNG

router = APIRouter(tags=["what-ifs"])


def add_whatifs(prefix: str, subject: Callable[..., Subject]) -> None:
    subject = targeted(subject)

    @router.post(f"{prefix}/mask", response_model=MaskOut, responses=BODY_ERRORS,
                 summary="prediction and top filters' saliency before and after masking pixels")
    async def mask(s: Subject = Depends(subject), body: MaskIn = Body(...),
                   service: Service = Depends(get_service)) -> dict:
        answer, _png = await whatif.mask(service, s, body.percent, body.mode, body.top_k, body.boost, body.seed)
        return answer

    @router.get(f"{prefix}/mask.png", response_class=Response, responses=PNG,
                summary="the masked image (masked pixels show the fill the model saw)")
    async def mask_png(
        s: Subject = Depends(subject),
        percent: float = Query(5.0, gt=0, le=100),
        mode: Literal["salient", "random"] = Query("salient"),
        top_k: int = Query(10, ge=1),
        boost: float = Query(100.0, gt=0, le=1e6),
        seed: int = Query(0, ge=0, le=2**32 - 1),
        service: Service = Depends(get_service),
    ) -> Response:
        _answer, png = await whatif.mask(service, s, percent, mode, top_k, boost, seed)
        return Response(png, media_type="image/png", headers=target_headers(s))

    @router.post(f"{prefix}/finetune", response_model=FinetuneOut, responses=BODY_ERRORS,
                 summary="one gradient step on the image's chosen filters; the image and its neighbours after")
    async def finetune(s: Subject = Depends(subject), body: FinetuneIn = Body(...),
                       service: Service = Depends(get_service)) -> dict:
        return await whatif.finetune(service, s, body.top_k, body.mode, body.step, body.neighbors, body.seed)


add_whatifs("/samples/{sample_id}", get_sample)
add_whatifs("/uploads/{upload_id}", get_upload)
