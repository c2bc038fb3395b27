"""The reliability battery's shared pieces: the tiny artifacts dir of the API tests, and `pss serve` as a real
separate process (so its memory can be read from /proc and it can be killed), listening on loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.backend.api.conftest import NUM_SAMPLES, artifacts_dir, free_port, tiny_model  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]


def proc_status(pid: int, key: str) -> int:
    """A memory figure of /proc/PID/status (``VmRSS``, ``VmHWM``: the peak RSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} for {pid}")


@dataclass
class Served:
    """A `pss serve` process; its stderr (the server log) goes to ``log``."""

    process: subprocess.Popen
    url: str
    port: int
    log: Path
    env: dict = field(default_factory=dict)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def rss(self) -> int:
        return proc_status(self.process.pid, "VmRSS")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        return self.process.wait(timeout)


def serve(artifacts: Path, log: Path, port: int | None = None, env: dict | None = None, verbose: bool = False) -> Served:
    """Starts `pss serve` and returns once /api/health says ready (or raises with the server's log)."""
    port = port or free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "backend.cli", *(["-v"] if verbose else []), "serve", "--artifacts", str(artifacts),
           "--port", str(port), "--device", "cpu"]
    with open(log, "ab") as sink:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=sink)
    served = Served(process, f"http://127.0.0.1:{port}", port, log, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pss serve exited with {process.returncode}: {served.log_text()[-3000:]}")
        try:
            if httpx.get(f"{served.url}/api/health", timeout=2).json()["ready"]:
                return served
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    served.stop(signal.SIGKILL)
    raise RuntimeError(f"pss serve did not become ready: {served.log_text()[-3000:]}")


def model_fingerprint(served: Served) -> tuple:
    """What the served model computes now for a fixed upload: prediction and filter-saliency profile (both
    recomputed, as every upload gets a new id), and one pruning of it."""
    from tests.backend.api import images

    with served.client() as http:
        upload = http.post("/api/uploads", files={"file": ("f.png", images.encode(images.pattern(seed=77), "PNG"))},
                           data={"label": "2"}).json()
        uid = upload["id"]
        profile = http.get(f"/api/uploads/{uid}/profile").json()
        pruned = http.post(f"/api/uploads/{uid}/prune", json={"filters": [0, 5, 9], "neighbors": 0}).json()
    return upload["probs"], profile["z"], pruned["after"]


@pytest.fixture(scope="session")
def server(artifacts_dir, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """One verbose server for the battery (bad inputs, isolation, security, request log). When the battery is
    done, the shared model must still compute exactly what it computed at the start."""
    served = serve(artifacts_dir, tmp_path_factory.mktemp("server") / "serve.log", verbose=True)
    at_start = model_fingerprint(served)
    yield served
    assert model_fingerprint(served) == at_start, "the battery changed what the shared model computes"
    served.stop()
