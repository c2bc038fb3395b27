"""Results of `pss experiments` (the paper's validation experiments), read from ARTIFACTS/experiments/*.json.

Names come from the fixed list ``backend.experiments.NAMES``; a request never names a path.
"""

import json
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from backend.experiments import EXPERIMENTS, NAMES, RESULTS_DIR

from ..deps import get_service
from ..service import NotFound, Service

router = APIRouter(tags=["experiments"])


def _path(service: Service, name: str) -> Path:
    return Path(service.artifacts.directory) / RESULTS_DIR / f"{name}.json"


def _read(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@router.get("/experiments", summary="which experiments exist and which have results")
def list_experiments(service: Service = Depends(get_service)) -> dict:
    items = []
    for name, experiment in EXPERIMENTS.items():
        doc = _read(_path(service, name))
        item = {"name": name, "title": experiment.title, "paper": experiment.paper, "available": doc is not None}
        if doc is not None:
            item.update({key: doc.get(key) for key in ("created", "seconds", "num_samples", "command")})
        items.append(item)
    return {"experiments": items, "command": f"pss experiments --artifacts {service.artifacts.directory}"}


@router.get("/experiments/{name}", summary="one experiment's results (the JSON `pss experiments` wrote)")
def get_experiment(name: str, service: Service = Depends(get_service)) -> Response:
    if name not in NAMES:
        raise NotFound(f"unknown experiment {name[:40]!r}; valid: {', '.join(NAMES)}")
    path = _path(service, name)
    try:
        body = path.read_bytes()
        json.loads(body)
    except (OSError, ValueError):
        raise NotFound(f"no results for {name!r} yet; run `pss experiments --artifacts DIR --which {name}`") from None
    return Response(body, media_type="application/json")
