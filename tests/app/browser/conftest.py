"""Browser tests: real headless Chromium (Selenium + Debian's chromedriver) against the real Dash app, which
talks to a real backend (uvicorn) over a tiny artifacts dir built by the real precompute job.

The backend fixtures are the backend's own (tests/backend/api/conftest.py). Set PSS_UI_ARTIFACTS=DIR to run
the same tests against another artifacts dir (e.g. the demo's) to measure interaction times there.
Screenshots of every step go to test-output/ui/.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.backend.api.conftest import artifacts_dir as tiny_artifacts_dir  # noqa: F401  (fixture)
from tests.backend.api.conftest import free_port, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUTPUT = Path(__file__).resolve().parents[3] / "test-output" / "ui"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)


@pytest.fixture(scope="session")
def ui_artifacts(request) -> Path:
    chosen = os.environ.get("PSS_UI_ARTIFACTS")
    return Path(chosen) if chosen else request.getfixturevalue("tiny_artifacts_dir")


@pytest.fixture(scope="session")
def backend(ui_artifacts):
    from backend.api.settings import Settings

    running = start_server(Settings(artifacts=ui_artifacts, device="cpu", port=free_port()))
    yield running
    stop_server(running)


@contextmanager
def dash_server(backend_url: str):
    """The Dash app on a free port, served by a threaded WSGI server like `pss ui` does; yields its URL."""
    from werkzeug.serving import make_server

    from app.main import create_dash_app

    server = make_server("127.0.0.1", free_port(), create_dash_app(backend_url).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def dashboard(directory: Path):
    """A real backend over the artifacts ``directory`` and a dashboard over it; yields (UI URL, backend)."""
    from backend.api.settings import Settings

    running = start_server(Settings(artifacts=directory, device="cpu", port=free_port()))
    try:
        with dash_server(running.url) as url:
            yield url, running
    finally:
        stop_server(running)


@pytest.fixture(scope="session")
def ui(backend):
    with dash_server(backend.url) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,800"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="pss-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # the page area itself is 1280x800, whatever room the (headless) browser chrome takes
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def timings(output_dir):
    """Interaction name -> seconds, written to test-output/ui/timings.json at the end."""
    measured: dict[str, list[float]] = {}
    yield measured
    (output_dir / "timings.json").write_text(json.dumps(measured, indent=2))
