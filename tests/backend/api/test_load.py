"""Load: 20 concurrent asyncio clients for 60 s over mixed routes against `pss serve` in its own process
(loopback only). Zero 5xx, p99 printed, and the server's RSS grows by less than 10% after a warm-up."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from . import images
from .conftest import NUM_SAMPLES, free_port, serve_command

CLIENTS = 20
WARM_UP_S = 10.0
DURATION_S = 60.0
UPLOADS = [images.encode(images.pattern(seed=s), "PNG") for s in range(8)]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def served(artifacts_dir):
    port = free_port()
    env = {**os.environ, "PSS_UPLOAD_CACHE_SIZE": "64", "PSS_RESULT_CACHE_SIZE": "128"}
    process = subprocess.Popen(serve_command(artifacts_dir, port), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pss serve exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).json()["ready"]:
                break
        except (httpx.HTTPError, ValueError, KeyError):
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("pss serve did not become ready")
    yield url, process
    process.terminate()
    process.wait(30)


def pick(rng: random.Random, uploads: list[int]) -> tuple[str, str, str, dict]:
    """(route name, method, path, kwargs) of one request in the mix."""
    i = rng.randrange(NUM_SAMPLES)
    roll = rng.random()
    if roll < 0.12:
        return "list", "GET", "/api/samples", {"params": {"correct": rng.choice(["true", "false"]), "limit": 20}}
    if roll < 0.27:
        return "detail", "GET", f"/api/samples/{i}", {}
    if roll < 0.40:
        return "filters", "GET", f"/api/samples/{i}/filters", {"params": {"top": 20}}
    if roll < 0.50:
        return "image", "GET", f"/api/samples/{i}/image.png", {}
    if roll < 0.62:
        layers = rng.choice([None, "0:5", "5:12", "12:20"])
        params = {"k": 10} | ({"layers": layers} if layers else {})
        return "neighbors", "GET", f"/api/samples/{i}/neighbors", {"params": params}
    if roll < 0.72:
        return "input-saliency", "GET", f"/api/samples/{i}/input-saliency.png", {"params": {"top_k": rng.choice([5, 10])}}
    if roll < 0.84:
        body = rng.choice([{"top_k": 5}, {"top_k": 5, "mode": "random", "seed": rng.randrange(50)},
                           {"filters": rng.sample(range(120), 3)}])
        return "prune", "POST", f"/api/samples/{i}/prune", {"json": body}
    if roll < 0.92 or not uploads:
        return "upload", "POST", "/api/uploads", {"files": {"file": ("u.png", rng.choice(UPLOADS))}}
    # the last 32 uploads are always in the 64-entry store (at most 20 more land while this request is on
    # its way), so every answer must be a 200: a 404 here would be a lost upload
    uid = rng.choice(uploads[-32:])
    return "upload-view", "GET", f"/api/uploads/{uid}/filters", {}


async def run_clients(url: str, seconds: float, seed: int) -> tuple[dict[str, list[float]], dict[int, int]]:
    latencies: dict[str, list[float]] = {}
    statuses: dict[int, int] = {}
    uploads: list[int] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def client(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            while time.monotonic() < deadline:
                name, method, path, kwargs = pick(rng, uploads)
                start = time.perf_counter()
                response = await http.request(method, path, **kwargs)
                latencies.setdefault(name, []).append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if name == "upload" and response.status_code == 200:
                    uploads.append(response.json()["id"])

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return latencies, statuses


def test_load_20_clients_60_s(served):
    url, process = served
    asyncio.run(run_clients(url, WARM_UP_S, seed=1))
    rss_before = rss_bytes(process.pid)
    latencies, statuses = asyncio.run(run_clients(url, DURATION_S, seed=2))
    rss_after = rss_bytes(process.pid)

    total = sum(statuses.values())
    everything = np.concatenate([np.asarray(v) for v in latencies.values()]) * 1000
    print(f"\n{total} requests in {DURATION_S:.0f} s from {CLIENTS} clients; statuses {statuses}")
    print(f"all routes: p50 {np.percentile(everything, 50):.0f} ms, p95 {np.percentile(everything, 95):.0f} ms, "
          f"p99 {np.percentile(everything, 99):.0f} ms")
    for name, values in sorted(latencies.items()):
        ms = np.asarray(values) * 1000
        print(f"  {name:15s} n={len(ms):5d} p50 {np.percentile(ms, 50):6.0f} ms  p99 {np.percentile(ms, 99):6.0f} ms")
    print(f"server RSS {rss_before / 2**20:.1f} MiB -> {rss_after / 2**20:.1f} MiB "
          f"({100 * (rss_after / rss_before - 1):+.1f}%)")

    assert not any(status >= 500 for status in statuses), statuses
    assert set(statuses) == {200}, statuses
    assert rss_after < 1.10 * rss_before
