"""Run everything on the embedded default: the Fashion-MNIST test set and the demo ResNet.

The first run computes the artifacts (profiles, statistics, features, FAISS index; a few minutes on a CPU,
with a progress bar) into $PSS_DEMO_DIR (default ~/.cache/pss/demo); later runs start at once. Then the
backend and the dashboard start and one URL is printed. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from app.cli import check_port, quiet_request_logs
from backend.api.experiment_runs import terminate_with_parent
from backend.data import load_dataset
from backend.errors import PSSError
from backend.experiments import RESULTS_DIR
from backend.models import load_model, resolve_device
from backend.store import MANIFEST
from precompute.job import run_precompute

MODEL_SPEC = "demo"
DATA_SPEC = "fashion-mnist:test"


def default_dir() -> Path:
    return Path(os.environ.get("PSS_DEMO_DIR") or Path.home() / ".cache" / "pss" / "demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="artifacts dir (default $PSS_DEMO_DIR or ~/.cache/pss/demo)")
    parser.add_argument("--host", default="127.0.0.1", help="interface for both servers (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="dashboard port (default 8050)")
    parser.add_argument("--backend-port", type=int, default=0, help="backend port (default: a free one)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                        help="where the model runs (default auto)")
    parser.add_argument("--batch-size", type=int, default=64, help="precompute batch size (default 64)")
    parser.add_argument("--limit", type=int, help="only the first N test images (a quicker first look)")
    parser.add_argument("--no-experiments", action="store_true",
                        help="do not start the quick run of the paper's experiments (by default it starts in the "
                             "background once the dashboard is up, when the dir has no experiment results yet)")


def ensure_artifacts(directory: Path, device: str, batch_size: int, limit: int | None) -> None:
    """Precomputes the demo artifacts unless ``directory`` already holds an up-to-date set (the job
    itself checks, and resumes an interrupted run)."""
    if not (directory / MANIFEST).exists():
        print(f"Computing the demo artifacts in {directory} (first run only) ...", flush=True)
    torch.set_num_threads(1)  # the same default as `pss precompute --threads`: see its help
    model = load_model(MODEL_SPEC, resolve_device(device))
    dataset = load_dataset(DATA_SPEC, MODEL_SPEC)
    run_precompute(model, dataset, directory, model_spec=MODEL_SPEC, data_spec=DATA_SPEC, batch_size=batch_size,
                   limit=limit, show_progress=True)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_backend(directory: Path, host: str, port: int, device: str, log_path: Path) -> subprocess.Popen:
    """`pss serve` in a child process (model work then never competes with the UI for the GIL)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    command = [sys.executable, "-m", "backend.cli", "serve", "--artifacts", str(directory), "--host", host,
               "--port", str(port), "--device", device]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=terminate_with_parent)


def wait_until_ready(process: subprocess.Popen, url: str, log_path: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = [line for line in log_path.read_text().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit code {process.returncode}"
            raise PSSError(f"the backend stopped while starting: {reason} (log: {log_path})")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise PSSError(f"the backend did not become ready in {timeout:.0f} s (log: {log_path})")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_quick_experiments(backend_url: str, directory: Path) -> None:
    """Starts the quick experiment run on the backend, so a new user sees the Experiments page fill; skipped
    when the dir already has results (a full run is never overwritten by a quick one)."""
    if any((directory / RESULTS_DIR).glob("*.json")):
        return
    try:
        response = httpx.post(f"{backend_url}/api/experiments/all/run", json={"quick": True}, timeout=10)
    except httpx.HTTPError as exc:
        print(f"(the quick experiment run did not start: {type(exc).__name__})", flush=True)
        return
    if response.status_code == 202:
        print("The paper's experiments run in the background (quick); the Experiments page fills as they finish.",
              flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from app.main import create_dash_app  # here, not at the top: Dash costs every other `pss` command 0.4 s

    if not getattr(args, "verbose", False):
        quiet_request_logs()  # the health polling and every page request would bury the one URL
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, docker stop: shut both servers down like Ctrl-C
    # Ctrl-C too, also when this process was started with SIGINT ignored (a background job of a script:
    # Python then installs no KeyboardInterrupt handler of its own, and Ctrl-C would do nothing)
    signal.signal(signal.SIGINT, _interrupt)
    directory = (args.dir or default_dir()).expanduser()
    check_port(args.host, args.port)
    ensure_artifacts(directory, args.device, args.batch_size, args.limit)
    backend_port = args.backend_port or free_port(args.host)
    backend_url = f"http://{args.host}:{backend_port}"
    log_path = directory.parent / f"{directory.name}-backend.log"
    backend = start_backend(directory, args.host, backend_port, args.device, log_path)
    try:
        wait_until_ready(backend, backend_url, log_path)
        ui = make_server(args.host, args.port, create_dash_app(backend_url).server, threaded=True)
        print(f"Dashboard: http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
        if not args.no_experiments:
            start_quick_experiments(backend_url, directory)
        try:
            ui.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            ui.server_close()
    finally:
        stop(backend)
    print("stopped", flush=True)
    return 0
