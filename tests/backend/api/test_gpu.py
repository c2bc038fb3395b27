"""On CUDA: the server's answers match the CPU's, and a real out-of-memory answers 503 + Retry-After, after
which the next request succeeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.settings import Settings

from .conftest import free_port, start_server, stop_server
from .test_routes import assert_clean_error, decode_png

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_server(artifacts_dir):
    running = start_server(Settings(artifacts=artifacts_dir, device="cuda", port=free_port(), result_cache_size=0))
    yield running
    stop_server(running)


def test_cuda_answers_match_cpu(gpu_server, client):
    assert next(gpu_server.service.model.parameters()).is_cuda
    with gpu_server.client() as gpu:
        assert gpu.get("/api/info").json()["device"].startswith("cuda")
        for body in ({"top_k": 5}, {"filters": [0, 7, 30]}):
            on_gpu = gpu.post("/api/samples/3/prune", json=body).json()
            on_cpu = client.post("/api/samples/3/prune", json=body).json()
            assert on_gpu["filters"] == on_cpu["filters"]
            assert np.allclose(on_gpu["after"]["probs"], on_cpu["after"]["probs"], atol=1e-4)
        gpu_map = decode_png(gpu.get("/api/samples/5/input-saliency.png").content).astype(float)
        cpu_map = decode_png(client.get("/api/samples/5/input-saliency.png").content).astype(float)
        assert np.abs(gpu_map - cpu_map).mean() < 2.0  # 0..255 colour scale; float32 GPU vs CPU rounding


def fill_gpu_memory() -> list[torch.Tensor]:
    """Allocates until CUDA refuses, largest blocks first, so the next allocation by anyone fails."""
    hog = []
    for block in (1 << 30, 1 << 26, 1 << 22, 1 << 20, 1 << 16):
        while True:
            try:
                hog.append(torch.empty(block, dtype=torch.uint8, device="cuda"))
            except torch.cuda.OutOfMemoryError:
                break
    return hog


def test_out_of_memory_is_503_and_the_next_request_succeeds(gpu_server):
    with gpu_server.client() as gpu:
        hog = fill_gpu_memory()
        try:
            response = gpu.get("/api/samples/9/input-saliency.png", params={"top_k": 4})
            detail = assert_clean_error(response, 503)
            assert "out of memory" in detail and int(response.headers["retry-after"]) >= 1
        finally:
            del hog
            torch.cuda.empty_cache()
        again = gpu.get("/api/samples/9/input-saliency.png", params={"top_k": 4})
        assert again.status_code == 200 and again.headers["content-type"] == "image/png"
