"""Per-image views, mounted under both /api/samples/{sample_id} and /api/uploads/{upload_id}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Body, Depends, Query, Response

from ..deps import get_service
from ..schemas import DetailOut, ErrorOut, FilterOut, NeighborOut, ProfileOut, PruneIn, PruneOut
from ..service import Invalid, Service, Subject
from ..targets import target_headers, targeted

PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}
BODY_ERRORS = {
    400: {"model": ErrorOut, "description": "the body cannot be parsed (e.g. not UTF-8)"},
    413: {"model": ErrorOut, "description": "the body is larger than the server accepts"},
}
LAYERS_PATTERN = r"^\d{1,6}:\d{1,6}$"
FILTERS_PATTERN = r"^\d{1,7}(,\d{1,7}){0,255}$"


def add_views(router: APIRouter, prefix: str, subject: Callable[..., Subject], noun: str) -> None:
    """Registers detail, image, filters, profile, input-saliency, neighbors and prune for one id kind; each
    takes ``?target=CLASS`` (answers name the class: a ``target`` field, or X-Target-* headers)."""
    subject = targeted(subject)

    @router.get(prefix, response_model=DetailOut, summary=f"{noun}: label, prediction, probabilities, loss")
    def detail(s: Subject = Depends(subject), service: Service = Depends(get_service)) -> dict:
        return service.detail(s)

    @router.get(f"{prefix}/image.png", response_class=Response, responses=PNG, summary=f"the {noun} as the model sees it")
    def image(s: Subject = Depends(subject), service: Service = Depends(get_service)) -> Response:
        return Response(service.image_png(s), media_type="image/png")

    @router.get(f"{prefix}/filters", response_model=list[FilterOut], summary="most salient filters first (by z)")
    def filters(
        s: Subject = Depends(subject),
        top: int = Query(20, ge=1, description="how many filters (at most the model's filter count)"),
        service: Service = Depends(get_service),
        response: Response = None,
    ) -> list[dict]:
        response.headers.update(target_headers(s))
        return service.top_filters(s, top)

    @router.get(f"{prefix}/profile", response_model=ProfileOut, summary="standardized saliency of every filter")
    def profile(s: Subject = Depends(subject), service: Service = Depends(get_service)) -> dict:
        return service.profile(s)

    @router.get(
        f"{prefix}/input-saliency.png",
        response_class=Response,
        responses=PNG,
        summary="pixels that drive the most salient filters (90th-percentile threshold, 3x3 blur, overlay)",
    )
    async def input_saliency(
        s: Subject = Depends(subject),
        top_k: int = Query(10, ge=1, description="salient filters boosted (at most the model's filter count)"),
        boost: float = Query(100.0, gt=0, le=1e6, description="factor applied to the top_k entries"),
        filters: str | None = Query(None, pattern=FILTERS_PATTERN, description="boost exactly these filter ids (I,J,...) instead of the top_k"),
        service: Service = Depends(get_service),
    ) -> Response:
        chosen = None if filters is None else [int(f) for f in filters.split(",")]
        return Response(await service.input_saliency_png(s, top_k, boost, chosen), media_type="image/png",
                        headers=target_headers(s))

    @router.get(f"{prefix}/neighbors", response_model=list[NeighborOut], summary="nearest dataset samples")
    def neighbors(
        s: Subject = Depends(subject),
        k: int = Query(10, ge=1, le=1000, description="how many neighbours"),
        layers: str | None = Query(
            None, pattern=LAYERS_PATTERN, description="layer range START:STOP (0 <= START < STOP <= num_layers)"
        ),
        space: Literal["saliency", "feature"] = Query("saliency", description="profile or penultimate features"),
        misclassified_only: bool = Query(False, description="only neighbours the model gets wrong"),
        service: Service = Depends(get_service),
        response: Response = None,
    ) -> list[dict]:
        response.headers.update(target_headers(s))
        return service.neighbors(s, k, _parse_layers(layers), space, misclassified_only)

    @router.post(
        f"{prefix}/prune",
        response_model=PruneOut,
        responses=BODY_ERRORS,
        summary="prediction before (stored) and after switching filters off, for the image and its neighbours",
    )
    async def prune(
        s: Subject = Depends(subject), body: PruneIn = Body(...), service: Service = Depends(get_service)
    ) -> dict:
        return await service.prune(s, body.filters, body.top_k, body.mode, body.seed, body.neighbors)


def _parse_layers(layers: str | None) -> tuple[int, int] | None:
    """The form of a layer range (the pattern allows only digits); its bounds are the service's to check."""
    if layers is None:
        return None
    start, stop = (int(part) for part in layers.split(":"))
    if start >= stop:
        raise Invalid(f"layers must be START:STOP with START < STOP, got {layers}")
    return start, stop
