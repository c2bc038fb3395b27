"""Background jobs: experiment runs started from the browser, and their progress; DELETE cancels."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from backend.experiments import NAMES

from .. import experiment_runs
from ..deps import get_service
from ..jobs import Busy
from ..schemas_whatif import JobOut, RunIn
from ..service import NotFound, Service
from .views import BODY_ERRORS

router = APIRouter(tags=["jobs"])
EXPERIMENTS_KIND = "experiments"


@router.post("/experiments/{name}/run", response_model=JobOut, status_code=202,
             responses={**BODY_ERRORS,
                        409: {"description": "an experiment run is already going (its id is in the message)"}},
             summary="run one experiment (or `all`) in the background; poll GET /api/jobs/{id}")
def run_experiment(name: str, body: RunIn = Body(RunIn()), service: Service = Depends(get_service)) -> dict:
    if name != "all" and name not in NAMES:
        raise NotFound(f"unknown experiment {name[:40]!r}; valid: all, {', '.join(NAMES)}")
    names = list(NAMES) if name == "all" else [name]
    artifacts, device = Path(service.artifacts.directory), str(service.device)
    title = f"{'all experiments' if name == 'all' else name}{', quick' if body.quick else ''}"
    try:
        job = service.jobs.start(
            EXPERIMENTS_KIND, title,
            lambda handle: experiment_runs.run_experiments(handle, artifacts, names, body.quick, device))
    except Busy as exc:
        raise HTTPException(409, str(exc)) from None
    return job.as_dict()


@router.get("/jobs", response_model=list[JobOut], summary="the latest job of each kind (or of one kind)")
def list_jobs(kind: str | None = Query(None, max_length=40), service: Service = Depends(get_service)) -> list[dict]:
    kinds = [kind] if kind else service.jobs.kinds()
    return [job.as_dict() for job in (service.jobs.latest(k) for k in kinds) if job is not None]


@router.get("/jobs/{job_id}", response_model=JobOut, summary="a job's state, progress (0..1) and result")
def get_job(job_id: str, service: Service = Depends(get_service)) -> dict:
    return _job(service, job_id).as_dict()


@router.delete("/jobs/{job_id}", response_model=JobOut, summary="cancel a running job (no effect once it ended)")
def cancel_job(job_id: str, service: Service = Depends(get_service)) -> dict:
    job = service.jobs.cancel(job_id[:64])
    if job is None:
        raise NotFound(f"no job {job_id[:64]!r}")
    return job.as_dict()


def _job(service: Service, job_id: str):
    job = service.jobs.get(job_id[:64])
    if job is None:
        raise NotFound(f"no job {job_id[:64]!r} (finished jobs are kept for a while only)")
    return job
