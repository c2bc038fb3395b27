"""The Experiments page in real headless Chromium: every experiment's figure renders (real backend + Dash app over
tiny artifacts whose results `pss experiments` wrote)."""

from __future__ import annotations

import threading
import time

import pytest

from backend.experiments import NAMES
from tests.app.browser.conftest import browser, output_dir  # noqa: F401  (fixtures; skips without chromium)
from tests.app.browser.test_walkthrough import shot
from tests.backend.api.conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ui_url(results_dir):
    from werkzeug.serving import make_server

    from app.main import create_dash_app
    from backend.api.settings import Settings

    backend = start_server(Settings(artifacts=results_dir, device="cpu", port=free_port()))
    server = make_server("127.0.0.1", free_port(), create_dash_app(backend.url).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    stop_server(backend)


def test_every_experiment_figure_renders(browser, ui_url, output_dir):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(f"{ui_url}/experiments")
    deadline = time.monotonic() + 60
    missing = list(NAMES)
    while missing and time.monotonic() < deadline:
        missing = [n for n in NAMES
                   if not browser.find_elements(By.CSS_SELECTOR, f"#experiments-{n}-graph .main-svg")]
        time.sleep(0.1)
    shot(browser, output_dir, "experiments")
    assert not missing, f"figures not rendered: {missing}"
    for name in NAMES:
        svg = browser.find_element(By.CSS_SELECTOR, f"#experiments-{name}-graph .main-svg")
        assert svg.size["height"] > 100 and svg.size["width"] > 300, name
        # the figure drew data (traces), not just empty axes
        assert browser.find_elements(By.CSS_SELECTOR, f"#experiments-{name}-graph .trace, #experiments-{name}-graph .hm"), name
    nav = browser.find_element(By.ID, "nav-experiments")
    assert "active" in nav.get_attribute("class")
    assert not browser.find_elements(By.CSS_SELECTOR, ".alert-error")
