"""A tiny artifacts dir (random-init narrow demo ResNet, 64 Fashion-MNIST test images) built through the real
precompute job, and a real uvicorn server over it on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

NUM_SAMPLES = 64
DATA_SPEC = "fashion-mnist:test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(seed: int = 1234) -> torch.nn.Module:
    """A narrow demo ResNet, random but not degenerate: the demo architecture zero-initializes the last
    BatchNorm of each block (so blocks start as identities and their convs get no gradient); random BN
    affine parameters and a wider classifier give every filter some saliency and varied predictions."""
    from backend.models.demo import DemoResNet

    torch.manual_seed(seed)
    model = DemoResNet(widths=(4, 4, 8, 8))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        model.fc.weight.normal_(0, 1.0)
    return model.eval()


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    from backend.data import load_dataset
    from backend.models import load_model
    from precompute.job import run_precompute

    root = tmp_path_factory.mktemp("api")
    checkpoint = root / "tiny.pt"
    torch.save(tiny_model().state_dict(), checkpoint)
    spec = f"checkpoint:{checkpoint}:demo"
    model = load_model(spec, "cpu")
    dataset = load_dataset(DATA_SPEC, spec)
    out = root / "artifacts"
    run_precompute(
        model, dataset, out, model_spec=spec, data_spec=DATA_SPEC, limit=NUM_SAMPLES, batch_size=32,
        shard_size=32, show_progress=False,
    )
    return out


@dataclass
class Server:
    url: str
    app: object
    thread: threading.Thread
    server: object

    @property
    def service(self):
        return self.app.state.service

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def start_server(settings) -> Server:
    """uvicorn in a thread of this process (so tests can inspect the served model), ready when it returns."""
    import uvicorn

    from backend.api.main import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).json()["ready"]:
                return Server(url, app, thread, server)
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError("the test server did not become ready")


def stop_server(server: Server) -> None:
    server.server.should_exit = True
    server.thread.join(timeout=30)


@pytest.fixture(scope="session")
def server(artifacts_dir):
    from backend.api.settings import Settings

    running = start_server(Settings(artifacts=artifacts_dir, device="cpu", port=free_port()))
    yield running
    stop_server(running)


@pytest.fixture()
def client(server):
    with server.client() as http:
        yield http


@dataclass
class Reference:
    """The same model, data and artifacts loaded independently of the server, for computing expected answers."""

    artifacts: object
    model: torch.nn.Module
    dataset: object
    spec: str


@pytest.fixture(scope="session")
def reference(artifacts_dir) -> Reference:
    from backend.data import load_dataset
    from backend.models import load_model
    from backend.store import Artifacts

    artifacts = Artifacts.open(artifacts_dir)
    spec = artifacts.model_spec
    return Reference(artifacts, load_model(spec, "cpu"), load_dataset(artifacts.data_spec, spec), spec)


def serve_command(artifacts: Path, port: int) -> list[str]:
    import sys

    return [sys.executable, "-m", "backend.cli", "serve", "--artifacts", str(artifacts), "--port", str(port), "--device", "cpu"]
