"""Serve an artifacts dir over HTTP: the FastAPI backend of the dashboard.

Settings come from these flags, then PSS_* environment variables (e.g. PSS_MAX_UPLOAD_BYTES,
PSS_UPLOAD_TTL_S, PSS_RESULT_CACHE_SIZE, PSS_QUEUE_SIZE, PSS_CORS_ORIGINS='["http://localhost:8050"]').
The artifacts are checked against the model (weights hash, filter layout) and the dataset (fingerprint)
before the server starts; stale or foreign artifacts are refused with a one-line reason.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", help="artifacts dir written by `pss precompute` (or PSS_ARTIFACTS)")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where the model runs (default auto)")


def settings_from_args(args: argparse.Namespace):
    from pydantic import ValidationError

    from backend.errors import PSSError

    from .settings import Settings

    flags = {name: getattr(args, name) for name in ("artifacts", "host", "port", "device")}
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise PSSError(f"invalid setting {where}: {first['msg']} (give --artifacts DIR or set PSS_ARTIFACTS)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .loader import load_service
    from .main import create_app

    settings = settings_from_args(args)
    service = load_service(settings)
    try:
        app = create_app(settings, service=service)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)
    finally:
        service.close()
    return 0
