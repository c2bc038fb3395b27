"""`pss demo` end to end: precompute (a small --limit), backend + dashboard, one URL, clean Ctrl-C / kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend import demo

WEIGHTS = Path(demo.__file__).resolve().parent / "models" / "weights" / "demo_resnet.pt"


def test_default_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PSS_DEMO_DIR", str(tmp_path / "d"))
    assert demo.default_dir() == tmp_path / "d"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not WEIGHTS.exists(), reason="the demo checkpoint is not trained yet (pss train-demo)")
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_demo_serves_one_url_and_stops_cleanly(tmp_path, stop_signal):
    port = demo.free_port("127.0.0.1")
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "demo", "--limit", "64", "--dir", str(tmp_path / "demo"),
         "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
    )
    lines = []
    try:
        deadline = time.monotonic() + 540
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Dashboard:"):
                break
        urls = [word for line in lines for word in line.split() if word.startswith("http")]
        assert urls == [f"http://127.0.0.1:{port}/"], "".join(lines)
        page = httpx.get(urls[0], timeout=30)
        assert page.status_code == 200 and "Parameter-space saliency" in page.text
        image = httpx.get(f"{urls[0]}media/samples/0/image.png", timeout=30)
        assert image.headers["content-type"] == "image/png"
        assert (tmp_path / "demo" / "manifest.json").exists()
    finally:
        process.send_signal(stop_signal)
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # say where it hung: SIGABRT makes faulthandler print every thread's Python stack
            process.send_signal(signal.SIGABRT)
            rest, _ = process.communicate(timeout=30)
            log = tmp_path / "demo-backend.log"
            pytest.fail(f"pss demo did not stop within 60 s of {stop_signal.name}:\n" + "".join(lines) + rest
                        + "\n--- backend log ---\n" + (log.read_text()[-3000:] if log.exists() else "(none)"))
    # SIGKILL leaves no chance to clean up: the backend child must still go (it asked the kernel for that)
    assert process.returncode == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 0), "".join(lines) + rest
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    backend_log = (tmp_path / "demo-backend.log").read_text()
    backend_port = int(backend_log.split("Uvicorn running on http://127.0.0.1:")[1].split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the child's own shutdown after SIGTERM takes a moment
        try:
            httpx.get(f"http://127.0.0.1:{backend_port}/api/health", timeout=2)
        except httpx.HTTPError:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the backend child still answers 30 s after pss demo got {stop_signal.name}")
