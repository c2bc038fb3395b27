"""A server with tiny limits: uploads expire and are evicted, a full compute queue answers 503 + Retry-After
and the next request succeeds, CORS stays closed unless configured."""

from __future__ import annotations

import threading
import time

import pytest

from backend.api.settings import Settings

from . import images
from .conftest import free_port, start_server, stop_server
from .test_routes import assert_clean_error
from .test_uploads import upload


@pytest.fixture(scope="module")
def small(artifacts_dir):
    settings = Settings(
        artifacts=artifacts_dir, device="cpu", port=free_port(), queue_size=1, upload_ttl_s=1.5,
        upload_cache_size=2, result_cache_size=0, retry_after_s=3,
    )
    running = start_server(settings)
    yield running
    stop_server(running)


def new_upload(http, seed: int) -> int:
    response = upload(http, images.encode(images.pattern(seed=seed), "PNG"))
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_upload_expires_after_ttl(small):
    with small.client() as http:
        uid = new_upload(http, 1)
        assert http.get(f"/api/uploads/{uid}").status_code == 200
        time.sleep(1.0)
        assert http.get(f"/api/uploads/{uid}").status_code == 200  # use renews it
        time.sleep(1.0)
        assert http.get(f"/api/uploads/{uid}/filters").status_code == 200
        time.sleep(2.0)
        assert_clean_error(http.get(f"/api/uploads/{uid}"), 404)


def test_upload_store_is_bounded(small):
    with small.client() as http:
        first, second, third = (new_upload(http, seed) for seed in (2, 3, 4))
        assert_clean_error(http.get(f"/api/uploads/{first}/profile"), 404)
        assert http.get(f"/api/uploads/{second}").status_code == 200
        assert http.get(f"/api/uploads/{third}").status_code == 200


def test_full_queue_answers_503_then_recovers(small):
    worker = small.service.worker
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(30)

    blocker = threading.Thread(target=worker.call, args=(hold,), kwargs={"timeout": 60})
    blocker.start()
    assert started.wait(10)
    queued: dict = {}

    def queued_request():
        with small.client() as http:
            queued["response"] = http.post("/api/samples/1/prune", json={"top_k": 2})

    waiting = threading.Thread(target=queued_request)
    waiting.start()
    try:
        deadline = time.monotonic() + 10
        while worker.pending < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.pending == 1  # the prune request holds the one queue slot
        with small.client() as http:
            response = http.get("/api/samples/2/input-saliency.png")
            detail = assert_clean_error(response, 503)
            assert response.headers["retry-after"] == "3" and "busy" in detail
            assert http.get("/api/samples/2").status_code == 200  # cheap reads never wait for the model
    finally:
        release.set()
        blocker.join(30)
        waiting.join(60)
    assert queued["response"].status_code == 200
    with small.client() as http:
        assert http.get("/api/samples/2/input-saliency.png").status_code == 200


def test_cors_is_closed_by_default(small):
    with small.client() as http:
        response = http.get("/api/info", headers={"Origin": "http://evil.example"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        preflight = http.options(
            "/api/info", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in preflight.headers
