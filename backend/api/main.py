"""``create_app(settings)``: the FastAPI application over one artifacts dir.

Every error is ``{"detail": "<one line>"}`` with a 4xx code (503 + Retry-After when the model is busy);
unexpected failures are logged and answered with a bare 500 that carries no traceback.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from backend.errors import PSSError

from .images import UploadRejected
from .limits import BodyLimitMiddleware
from .request_log import RequestLogMiddleware
from .routes import experiments, filters, groups, health, info, jobs, samples, selection, typicality, uploads, whatif
from .schemas import ErrorOut
from .service import Invalid, NotFound, Service
from .settings import Settings
from .worker import Overloaded

log = logging.getLogger(__name__)

ERRORS = {
    404: {"model": ErrorOut, "description": "unknown id"},
    422: {"model": ErrorOut, "description": "invalid parameter; the message gives the allowed range"},
    503: {"model": ErrorOut, "description": "busy or out of GPU memory; retry after `Retry-After` seconds"},
}


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    """The app; it loads (and validates) the artifacts on start-up unless a ready ``service`` is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from starlette.concurrency import run_in_threadpool

        from .loader import load_service

        owned = service is None
        if owned:
            app.state.service = await run_in_threadpool(load_service, settings)
        threading.Thread(target=app.state.service.warm_up, name="pss-warm-up", daemon=True).start()
        try:
            yield
        finally:
            if owned:
                app.state.service.close()

    app = FastAPI(
        title="Parameter-space saliency API",
        version="1.0",
        description="Profiles, input-space maps, neighbours, live pruning and uploads over a precomputed "
        "artifacts dir (Levin et al., 'Where do Models go Wrong? Parameter-Space Saliency Maps').",
        lifespan=lifespan,
    )
    if service is not None:
        app.state.service = service  # usable even by clients that skip the lifespan (ASGI test transports)
    for module in (health, info, samples, uploads, typicality, experiments, whatif, jobs, groups, filters, selection):
        app.include_router(module.router, prefix="/api", responses=ERRORS)
    app.add_middleware(
        BodyLimitMiddleware, default=settings.max_json_bytes, limits={"/api/uploads": settings.max_upload_bytes}
    )
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"])
    app.add_middleware(RequestLogMiddleware)  # outermost of ours: ids also on 413s and CORS answers
    _add_error_handlers(app, settings)
    return app


def _add_error_handlers(app: FastAPI, settings: Settings) -> None:
    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(_describe(e) for e in exc.errors()) or "invalid request")

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(Invalid)
    async def invalid(_request: Request, exc: Invalid) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(PSSError)
    async def user_error(_request: Request, exc: PSSError) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(UploadRejected)
    async def rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(Overloaded)
    async def overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
        return error(503, str(exc), {"Retry-After": str(settings.retry_after_s)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "internal error; the server log has the details")


def _describe(err: dict) -> str:
    where = ".".join(str(part) for part in err.get("loc", ()) if part != "body" or len(err["loc"]) == 1)
    message = err.get("msg", "invalid")
    return f"{where}: {message}" if where else message
