"""The what-if cards (Masks, One-step fix, Explained class) and running experiments from the Experiments page,
in real headless Chromium against the real backend over tiny artifacts. Screenshots go to test-output/ui/.

The Experiments page's quick run of all experiments on the demo is measured by hand (docs/benchmarks.md);
set PSS_UI_QUICK_RUN_DIR=DIR (an artifacts dir, copied first) to time it here, and PSS_UI_QUICK_BUDGET_S to
also check that time.
"""

from __future__ import annotations

import os
import shutil
import time
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from tests.app.browser.conftest import dashboard
from tests.app.browser.test_walkthrough import idle, shot, wait_for

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def first_mistake(backend) -> int:
    service = backend.service
    return int(np.flatnonzero(service.labels != service.preds)[0])


def text_of(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def test_masks_card(browser, ui, backend, output_dir):
    sid = first_mistake(backend)
    browser.get(f"{ui}/sample/{sid}")
    wait_for(browser, lambda d: d.find_elements(By.ID, "sample-mask-img") and idle(d), what="the masked image")
    summary = text_of(browser, "#sample-mask-summary")
    answer = backend.client().post(f"/api/samples/{sid}/mask", json={"percent": 5, "mode": "salient"}).json()
    assert f"{answer['masked_pixels']} pixels masked" in summary
    assert browser.find_elements(By.CSS_SELECTOR, "#sample-mask-filters .main-svg")
    salient_src = browser.find_element(By.ID, "sample-mask-img").get_attribute("src")
    browser.find_element(By.CSS_SELECTOR, "#sample-mask-mode input[value='random']").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "sample-mask-img").get_attribute("src") != salient_src
             and idle(d), what="the randomly masked image")
    shot(browser, output_dir, "whatif-masks")


def test_one_step_fix_card(browser, ui, backend, output_dir):
    sid = first_mistake(backend)
    browser.get(f"{ui}/sample/{sid}")
    wait_for(browser, lambda d: d.find_elements(By.ID, "sample-fix-summary") and idle(d), what="the one-step fix")
    answer = backend.client().post(f"/api/samples/{sid}/finetune",
                                   json={"top_k": 25, "mode": "salient", "step": 0.001, "neighbors": 10}).json()
    assert text_of(browser, "#sample-fix-summary").startswith(f"{len(answer['filters'])} salient filters")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sample-fix-table tbody tr")
    assert len(rows) == len(answer["neighbors"]) > 0
    browser.find_element(By.CSS_SELECTOR, "#sample-fix-mode input[value='least']").click()
    wait_for(browser, lambda d: "least filters" in text_of(d, "#sample-fix-summary") and idle(d),
             what="the least-salient step")
    shot(browser, output_dir, "whatif-one-step-fix")


def test_whatif_controls_deep_link(browser, ui, backend, output_dir):
    """A link with the Masks and One-step fix controls opens the page in that state, and a change is written back."""
    sid = first_mistake(backend)
    link = f"{ui}/sample/{sid}?top_k=10&mask=20&mask_by=random&fix=5&fix_by=least&fix_step=0.01"
    browser.get(link)
    wait_for(browser, lambda d: d.find_elements(By.ID, "sample-mask-summary")
             and d.find_elements(By.ID, "sample-fix-summary") and idle(d), what="both what-if cards")
    api = backend.client()
    mask = api.post(f"/api/samples/{sid}/mask", json={"percent": 20, "mode": "random"}).json()
    assert text_of(browser, "#sample-mask-summary").startswith(f"{mask['masked_pixels']} pixels masked")
    assert browser.find_element(By.ID, "sample-mask-img").get_attribute("alt") == "20% of the pixels masked (random)"
    fix = api.post(f"/api/samples/{sid}/finetune", json={"top_k": 5, "mode": "least", "step": 0.01}).json()
    # least-salient steps are rescaled to the salient filters' gradient norm: the answer says the step taken
    summary = f"{len(fix['filters'])} least filters, step {fix['step']:.3g}:"
    assert text_of(browser, "#sample-fix-summary").startswith(summary)
    checked = {e.get_attribute("value") for e in browser.find_elements(By.CSS_SELECTOR, "input[type=radio]:checked")
               if e.find_elements(By.XPATH, "./ancestor::*[@id='sample-mask-mode' or @id='sample-fix-mode' or "
                                            "@id='sample-fix-step']")}
    assert checked == {"random", "least", "0.01"}
    assert browser.find_element(By.CSS_SELECTOR, "#sample-mask-percent .dash-slider-thumb").get_attribute(
        "aria-valuenow") == "4"  # the 20% stop
    browser.find_element(By.CSS_SELECTOR, "#sample-mask-mode input[value='salient']").click()
    wait_for(browser, lambda d: "mask_by" not in d.current_url and idle(d), what="the link without mask_by")
    query = {k: v[0] for k, v in parse_qs(urlparse(browser.current_url).query).items()}
    assert query == {"top_k": "10", "mask": "20", "fix": "5", "fix_by": "least", "fix_step": "0.01"}
    shot(browser, output_dir, "whatif-deep-link")


def test_target_class(browser, ui, backend, output_dir):
    sid = first_mistake(backend)
    service = backend.service
    label, pred = int(service.labels[sid]), int(service.preds[sid])
    other = next(c for c in range(len(service.class_names)) if c not in (label, pred))
    browser.get(f"{ui}/sample/{sid}")
    wait_for(browser, lambda d: d.find_elements(By.ID, "sample-target-card") and idle(d), what="the target card")
    card = browser.find_element(By.ID, "sample-target-card")
    assert "target-card-alt" not in card.get_attribute("class") and "true label" in card.text
    browser.get(f"{ui}/sample/{sid}?target={other}")
    wait_for(browser, lambda d: "target-card-alt" in d.find_element(By.ID, "sample-target-card").get_attribute("class")
             and idle(d), what="the chosen-class warning")
    card = browser.find_element(By.ID, "sample-target-card")
    assert service.class_names[other] in card.find_element(By.CSS_SELECTOR, ".alert-warn").text
    # the cards below are computed against that class: the salient-filter bars are the target's top filters
    top = backend.client().get(f"/api/samples/{sid}/filters", params={"top": 20, "target": other}).json()
    plain = backend.client().get(f"/api/samples/{sid}/filters", params={"top": 20}).json()
    shown = wait_for(browser, lambda d: d.execute_script(
        "const g = document.querySelector('#sample-filters-graph .js-plotly-plot');"
        "return g && g.data && g.data[0].customdata;"), what="the salient-filter bars")
    assert [int(f) for f in shown] == [f["filter"] for f in top] != [f["filter"] for f in plain]
    mask = backend.client().post(f"/api/samples/{sid}/mask", params={"target": other}, json={"percent": 5}).json()
    wait_for(browser, lambda d: d.find_elements(By.ID, "sample-mask-summary") and idle(d), what="masks")
    assert f"{mask['masked_pixels']} pixels masked" in text_of(browser, "#sample-mask-summary")
    shot(browser, output_dir, "whatif-target")


def test_unlabelled_upload_says_predicted(browser, ui, backend, output_dir, tmp_path):
    from PIL import Image

    image = Image.fromarray(np.asarray(backend.service.dataset.display_image(0), dtype=np.uint8))
    path = tmp_path / "upload.png"
    image.save(path)
    with open(path, "rb") as handle:
        up = backend.client().post("/api/uploads", files={"file": ("u.png", handle.read(), "image/png")}).json()
    browser.get(f"{ui}/upload/{up['id']}")
    wait_for(browser, lambda d: d.find_elements(By.ID, "sample-target-card") and idle(d), what="the upload page")
    text = browser.find_element(By.ID, "sample-target-card").text
    assert "no true label" in text and "predicted class" in text and "not comparable" in text
    shot(browser, output_dir, "whatif-upload-unlabelled")


@pytest.fixture()
def run_ui(tiny_artifacts_dir, tmp_path):
    """A backend over a copy of the artifacts (runs write results there) and a dashboard over it."""
    source = os.environ.get("PSS_UI_QUICK_RUN_DIR") or tiny_artifacts_dir
    directory = tmp_path / "artifacts"
    shutil.copytree(source, directory, ignore=shutil.ignore_patterns("experiments"))
    with dashboard(directory) as pair:
        yield pair


def test_run_one_experiment_and_cancel_all(browser, run_ui, output_dir):
    url, _backend = run_ui
    browser.get(f"{url}/experiments")
    button = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[id*='neighbors'][id*='experiments-run']"),
                      what="the neighbours Run button")
    assert not browser.find_elements(By.CSS_SELECTOR, "#experiments-neighbors-graph")
    button.click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#experiments-neighbors-graph .main-svg"),
             timeout=240, what="the neighbours figure after its run")
    wait_for(browser, lambda d: text_of(d, "#experiments-status") == "neighbors, quick: done", timeout=60,
             what="the run's end")
    browser.find_element(By.ID, "experiments-run-all").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "experiments-progress").is_displayed(), what="the progress bar")
    shot(browser, output_dir, "experiments-running")
    browser.find_element(By.ID, "experiments-cancel").click()
    wait_for(browser, lambda d: "cancelled" in text_of(d, "#experiments-status"), timeout=60, what="the cancel")
    assert not browser.find_element(By.ID, "experiments-progress").is_displayed()


@pytest.mark.skipif(not os.environ.get("PSS_UI_QUICK_RUN_DIR"), reason="set PSS_UI_QUICK_RUN_DIR to time it")
def test_quick_run_fills_the_page(browser, run_ui, output_dir):
    from backend.experiments import NAMES

    url, _backend = run_ui
    browser.get(f"{url}/experiments")
    started = time.perf_counter()
    wait_for(browser, lambda d: d.find_element(By.ID, "experiments-run-all"), what="Run all").click()
    wait_for(browser, lambda d: all(d.find_elements(By.CSS_SELECTOR, f"#experiments-{n}-graph .main-svg")
                                    for n in NAMES), timeout=900, what="every figure")
    elapsed = time.perf_counter() - started
    shot(browser, output_dir, "experiments-quick-filled")
    print(f"quick run filled the Experiments page in {elapsed:.1f} s")
    budget = os.environ.get("PSS_UI_QUICK_BUDGET_S")
    if budget:
        assert elapsed <= float(budget)
