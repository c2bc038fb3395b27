"""Background jobs: progress, results, one at a time, cancelling; experiment runs from the API as a child process."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from backend.api.jobs import Busy, Jobs

from .conftest import free_port, start_server, stop_server
from .test_routes import assert_clean_error


def wait(jobs: Jobs, job_id: str):
    job = jobs.wait(job_id, timeout=30)
    assert job.state != "running"
    return job


def test_job_reports_progress_and_result():
    jobs = Jobs()
    gate = threading.Event()

    def work(handle):
        handle.report(0.5, "half")
        gate.wait(10)
        return {"answer": 42}

    job = jobs.start("k", "a job", work)
    deadline = time.monotonic() + 10
    while jobs.get(job.id).progress < 0.5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert jobs.get(job.id).as_dict()["message"] == "half"
    with pytest.raises(Busy):
        jobs.start("k", "another", work)
    other = jobs.start("other kind", "runs beside it", lambda handle: 1)
    gate.set()
    assert wait(jobs, job.id).as_dict()["result"] == {"answer": 42}
    assert wait(jobs, other.id).result == 1
    assert jobs.latest("k").id == job.id


def test_job_cancel_and_failure():
    jobs = Jobs()

    def loop(handle):
        while True:
            handle.report(0.1)
            time.sleep(0.01)

    job = jobs.start("k", "endless", loop)
    jobs.cancel(job.id)
    assert wait(jobs, job.id).state == "cancelled"
    failed = jobs.start("k", "fails", lambda handle: 1 / 0)
    done = wait(jobs, failed.id)
    assert done.state == "failed" and "division" in done.error


@pytest.fixture()
def own_server(artifacts_dir, tmp_path):
    """A server over a copy of the artifacts, so experiment results written here touch no other test."""
    from backend.api.settings import Settings

    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, copy)
    running = start_server(Settings(artifacts=copy, device="cpu", port=free_port()))
    yield running, copy
    stop_server(running)


def poll(client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        seen.append(job["progress"])
        if job["state"] != "running":
            return job, seen
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_experiment_run_from_the_api(own_server):
    server, directory = own_server
    with server.client() as client:
        assert_clean_error(client.post("/api/experiments/nope/run", json={"quick": True}), 404)
        started = client.post("/api/experiments/neighbors/run", json={"quick": True})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        busy = client.post("/api/experiments/pruning/run", json={"quick": True})
        assert busy.status_code == 409 and job_id in busy.json()["detail"]
        assert client.get("/api/health").status_code == 200  # the server answers meanwhile
        job, seen = poll(client, job_id)
        assert job["state"] == "done", job
        assert job["result"] == {"experiments": ["neighbors"], "quick": True,
                                 "results": ["/api/experiments/neighbors"]}
        assert seen == sorted(seen) and job["progress"] == 1.0
        doc = json.loads((directory / "experiments" / "neighbors.json").read_text())
        assert "--quick" in doc["command"]
        assert client.get("/api/experiments/neighbors").status_code == 200
        assert client.get("/api/jobs", params={"kind": "experiments"}).json()[0]["id"] == job_id


def test_experiment_run_cancel(own_server):
    server, directory = own_server
    with server.client() as client:
        job_id = client.post("/api/experiments/all/run", json={"quick": False}).json()["id"]
        time.sleep(1.0)
        assert client.delete(f"/api/jobs/{job_id}").json()["id"] == job_id
        job, _ = poll(client, job_id, timeout=30)
        assert job["state"] == "cancelled"
        assert not (directory / "experiments" / "sanity.json").exists()
        assert_clean_error(client.delete("/api/jobs/unknown"), 404)
        # the slot is free again
        again = client.post("/api/experiments/neighbors/run", json={"quick": True})
        assert again.status_code == 202
        client.delete(f"/api/jobs/{again.json()['id']}")
        poll(client, again.json()["id"], timeout=30)
