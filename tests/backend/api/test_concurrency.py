"""8 threads for 30 s mixing pruned and unpruned requests (nothing cached, so every answer is recomputed):
each response equals its single-threaded answer, and the served model is exactly as it was afterwards."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from backend.api.settings import Settings
from backend.models import weights_sha256

from . import images
from .conftest import free_port, start_server, stop_server

THREADS = 8
DURATION_S = 30.0


@pytest.fixture(scope="module")
def uncached(artifacts_dir):
    settings = Settings(
        artifacts=artifacts_dir, device="cpu", port=free_port(), result_cache_size=0, upload_cache_size=100_000
    )
    running = start_server(settings)
    yield running
    stop_server(running)


def requests_for(upload_id: int) -> list[tuple[str, str, dict | None]]:
    u = f"/api/uploads/{upload_id}"
    return [
        ("GET", "/api/samples/3", None),
        ("GET", "/api/samples/3/filters?top=10", None),
        ("GET", "/api/samples/5/neighbors?k=5&layers=2:8", None),
        ("GET", "/api/samples/1/neighbors?k=10", None),
        ("GET", "/api/samples/5/input-saliency.png?top_k=5", None),
        ("GET", "/api/samples/6/input-saliency.png?top_k=3&boost=10", None),
        ("POST", "/api/samples/1/prune", {"filters": [0, 1, 2]}),
        ("POST", "/api/samples/1/prune", {"filters": [50, 60, 61]}),  # same sample, someone else's filters
        ("POST", "/api/samples/2/prune", {"top_k": 5, "mode": "salient"}),
        ("POST", "/api/samples/2/prune", {"top_k": 5, "mode": "random", "seed": 1}),
        ("POST", "/api/samples/7/prune", {"top_k": 3, "mode": "least", "neighbors": 20}),
        ("GET", f"{u}/input-saliency.png", None),
        ("POST", f"{u}/prune", {"top_k": 4}),
        ("GET", f"{u}/neighbors?k=4&space=feature", None),
        ("UPLOAD", "/api/uploads", None),
    ]


UPLOAD_BYTES = images.encode(images.pattern(seed=21), "PNG")


def answer(http, method: str, path: str, body: dict | None):
    if method == "UPLOAD":  # a new id each time; the prediction must not change
        response = http.post("/api/uploads", files={"file": ("u.png", UPLOAD_BYTES)})
        data = response.json()
        return response.status_code, json.dumps([data.get("pred"), data.get("probs")])
    response = http.post(path, json=body) if method == "POST" else http.get(path)
    return response.status_code, response.content


def test_concurrent_answers_equal_single_threaded_ones(uncached):
    model = uncached.service.model
    digest = weights_sha256(model)
    with uncached.client() as http:
        upload_id = http.post("/api/uploads", files={"file": ("u.png", UPLOAD_BYTES)}, data={"label": "4"}).json()["id"]
        cases = requests_for(upload_id)
        expected = [answer(http, *case) for case in cases]
    assert all(status == 200 for status, _ in expected)
    # guard: the two prunings of sample 1 really differ, so mixing them up would be caught
    assert expected[6][1] != expected[7][1]

    mismatches: list[str] = []
    counts = [0] * THREADS
    deadline = time.monotonic() + DURATION_S

    def hammer(worker: int) -> None:
        rng = random.Random(worker)
        with uncached.client() as http:
            while time.monotonic() < deadline:
                i = rng.randrange(len(cases))
                got = answer(http, *cases[i])
                counts[worker] += 1
                if got != expected[i]:
                    mismatches.append(f"{cases[i][0]} {cases[i][1]} {cases[i][2]}: status {got[0]}")

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DURATION_S + 120)
    assert not any(thread.is_alive() for thread in threads)
    print(f"\n{sum(counts)} concurrent requests from {THREADS} threads in {DURATION_S:.0f} s; per thread {counts}")
    assert not mismatches, mismatches[:5]
    assert min(counts) > 0
    assert weights_sha256(model) == digest
    assert not model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
