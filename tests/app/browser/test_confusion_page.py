"""The confusion page (issue 12) and its "Fix this kind of mistake" panel (issue 13) in real headless Chromium,
against the real backend over the tiny artifacts (PSS_UI_ARTIFACTS=DIR for another dir, e.g. the demo's).
Every number the page shows is checked against the backend's own answer. Screenshots go to test-output/ui/.
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from tests.app.browser.test_issue16 import axe_violations
from tests.app.browser.test_walkthrough import click, idle, shot, wait_for

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
FIX_BODY = {"top_k": 10, "mode": "salient", "step": 0.001, "neighbors": 10}  # the panel's defaults


@pytest.fixture(scope="module")
def pair(backend) -> tuple[int, int]:
    """The most frequent confusion of the served artifacts (ties: the smaller pair)."""
    service = backend.service
    wrong = service.labels != service.preds
    pairs, counts = np.unique(np.stack([service.labels[wrong], service.preds[wrong]], axis=1), axis=0,
                              return_counts=True)
    return tuple(int(v) for v in pairs[np.argmax(counts)])


def page_ready(driver) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, "#confusion-fingerprint .scatterlayer path")) and idle(driver)


def path_of(driver) -> str:
    return urlparse(driver.current_url).path


def test_a_matrix_cell_opens_its_confusion(browser, ui, backend, pair, output_dir):
    browser.get(ui + "/")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#overview-confusion .heatmaplayer") and idle(d),
             what="the confusion matrix")
    x, y = browser.execute_script("""
        const gd = document.querySelector('#overview-confusion .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        return [xa._offset + xa.l2p(arguments[1]) - box.width / 2, ya._offset + ya.l2p(arguments[0]) - box.height / 2];
        """, *pair)
    plot = browser.find_element(By.CSS_SELECTOR, "#overview-confusion .js-plotly-plot")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    ActionChains(browser).move_to_element_with_offset(plot, int(x), int(y)).pause(0.3).click().perform()
    wait_for(browser, lambda d: path_of(d) == f"/confusion/{pair[0]}/{pair[1]}", what="the confusion page")
    wait_for(browser, page_ready, what="the fingerprint")
    names = backend.service.class_names
    answer = backend.client().get(f"/api/confusions/{pair[0]}/{pair[1]}").json()
    assert browser.find_element(By.CSS_SELECTOR, ".page h1").text == f"{names[pair[0]]} predicted as {names[pair[1]]}"
    assert browser.find_element(By.ID, "confusion-count").text == f"{answer['count']} mistakes"
    # the most frequent confusions beside the matrix lead to the same page
    browser.get(ui + "/")
    first = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".conf-list a.conf-row"), what="the list")[0]
    assert first.get_attribute("href").endswith(f"/confusion/{pair[0]}/{pair[1]}")


def test_deep_link_shows_fingerprint_filters_and_mistakes(browser, ui, backend, pair, output_dir):
    browser.get(f"{ui}/confusion/{pair[0]}/{pair[1]}")
    wait_for(browser, page_ready, what="the fingerprint")
    answer = backend.client().get(f"/api/confusions/{pair[0]}/{pair[1]}",
                                  params={"top": 15, "profile": "true"}).json()
    drawn = browser.execute_script("const g = document.querySelector('#confusion-fingerprint .js-plotly-plot');"
                                   "return [Array.from(g._fullData[0].y), Array.from(g._fullData[1].customdata)];")
    np.testing.assert_allclose(drawn[0], answer["profile"], atol=1e-6)  # the demo-sized profile is drawn whole
    assert [int(f) for f in drawn[1]] == [f["filter"] for f in answer["top_filters"]]
    links = browser.find_elements(By.CSS_SELECTOR, "#confusion-filters a")
    assert [urlparse(a.get_attribute("href")).path for a in links] == \
        [f"/filter/{f['filter']}" for f in answer["top_filters"]]
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#confusion-mistakes a.thumb")
    assert [urlparse(t.get_attribute("href")).path for t in thumbs] == \
        [f"/sample/{i}" for i in answer["sample_ids"][:24]]
    assert not axe_violations(browser)
    shot(browser, output_dir, "confusion-page")


def test_filter_link_and_mistake_thumbnail_open_their_pages(browser, ui, backend, pair):
    browser.get(f"{ui}/confusion/{pair[0]}/{pair[1]}")
    wait_for(browser, page_ready, what="the confusion page")
    link = browser.find_element(By.CSS_SELECTOR, "#confusion-filters a")
    target = urlparse(link.get_attribute("href")).path
    click(browser, link)
    wait_for(browser, lambda d: path_of(d) == target, what="the filter page's address")
    browser.get(f"{ui}/confusion/{pair[0]}/{pair[1]}")
    wait_for(browser, page_ready, what="the confusion page")
    tile = browser.find_element(By.CSS_SELECTOR, "#confusion-mistakes a.thumb")
    sample = urlparse(tile.get_attribute("href")).path
    click(browser, tile)
    heading = f"#{sample.rsplit('/', 1)[1]}"
    wait_for(browser, lambda d: path_of(d) == sample
             and heading in d.find_element(By.CSS_SELECTOR, ".sample-header h1").text, what="the sample page")


@pytest.mark.parametrize("path, words", [("/confusion/0/0", "two different classes"),
                                         ("/confusion/0/x", "names no pair of classes"),
                                         ("/confusion/0/99999", "No such confusion")])
def test_bad_pairs_say_what_is_wrong(browser, ui, path, words):
    browser.get(ui + path)
    found = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".page .alert"), what="the message")
    assert words in found[0].text


def test_a_pair_the_model_never_confuses(browser, ui, backend):
    service = backend.service
    seen = set(zip(service.labels.tolist(), service.preds.tolist()))
    classes = len(service.class_names)
    true, pred = next((t, p) for t in range(classes) for p in range(classes) if t != p and (t, p) not in seen)
    browser.get(f"{ui}/confusion/{true}/{pred}")
    found = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".page .alert"), what="the message")
    assert "makes no mistake of this kind" in found[0].text


def fix_rows(driver, prefix: str = "confusion") -> dict[str, list[str]]:
    rows = {}
    for name in ("group", "neighbours", "dataset"):
        cells = driver.find_elements(By.CSS_SELECTOR, f"#{prefix}-fix-{name}-row td")
        rows[name] = [c.text for c in cells]
    return rows


def expected_row(accuracy: dict) -> list[str]:
    before, after = accuracy["before"], accuracy["after"]
    return [f"{before:.1%}", f"{after:.1%}", f"{100 * (after - before):+.1f} pts"]


def dataset_accuracy(backend, answer: dict) -> dict:
    """The answer's whole-dataset accuracy, waiting for its job where the dataset is too large to answer inline."""
    deadline = time.monotonic() + 300
    while answer["dataset_accuracy"] is None and time.monotonic() < deadline:
        job = backend.client().get(f"/api/jobs/{answer['dataset_job']}").json()
        if job["state"] != "running":
            return job["result"]
        time.sleep(0.2)
    return answer["dataset_accuracy"]


def test_fix_panel_prunes_and_shows_accuracies(browser, ui, backend, pair, output_dir):
    browser.get(f"{ui}/confusion/{pair[0]}/{pair[1]}")
    wait_for(browser, page_ready, what="the confusion page")
    click(browser, browser.find_element(By.ID, "confusion-fix-run"))
    wait_for(browser, lambda d: len(fix_rows(d)["dataset"]) == 3 and idle(d), timeout=300, what="the accuracies")
    answer = backend.client().post("/api/groups/prune", json={"confusion": list(pair), **FIX_BODY}).json()
    rows = fix_rows(browser)
    assert rows["group"] == expected_row(answer["group_accuracy"])
    assert rows["dataset"] == expected_row(dataset_accuracy(backend, answer))
    if answer["neighbors_accuracy"] is not None:
        assert rows["neighbours"] == expected_row(answer["neighbors_accuracy"])
    summary = browser.find_element(By.ID, "confusion-fix-summary").text
    assert summary.startswith(f"{len(answer['filters'])} most salient filters switched off")
    assert not axe_violations(browser)
    shot(browser, output_dir, "confusion-fix")


def test_fix_panel_follows_a_dataset_job(browser, ui, backend, pair, monkeypatch):
    """A large dataset's accuracy after the change comes from a background job: a progress bar, then the
    numbers (forced here by lowering the size the backend evaluates inline)."""
    from backend.api import groups

    monkeypatch.setattr(groups, "INLINE_SAMPLES", 0)
    monkeypatch.setattr(groups, "CHUNK", 4)  # many small steps, so the progress is seen moving
    browser.get(f"{ui}/confusion/{pair[0]}/{pair[1]}")
    wait_for(browser, page_ready, what="the confusion page")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#confusion-fix-intervention input[value='finetune']"))
    click(browser, browser.find_element(By.ID, "confusion-fix-run"))
    wait_for(browser, lambda d: d.find_elements(By.ID, "confusion-fix-progress") or len(fix_rows(d)["dataset"]) == 3,
             what="the job's progress or its result")
    wait_for(browser, lambda d: len(fix_rows(d)["dataset"]) == 3 and idle(d), timeout=300, what="the job's result")
    job = backend.client().get("/api/jobs", params={"kind": "dataset-accuracy"}).json()[0]
    assert job["state"] == "done"
    assert fix_rows(browser)["dataset"] == expected_row(job["result"])
    assert "stepped" in browser.find_element(By.ID, "confusion-fix-summary").text


def test_fix_panel_downloads_the_patched_weights(browser, ui, backend, pair, tmp_path):
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(f"{ui}/confusion/{pair[0]}/{pair[1]}")
    wait_for(browser, page_ready, what="the confusion page")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#confusion-fix-top-k input[value='5']"))
    wait_for(browser, lambda d: "top_k=5" in d.find_element(By.ID, "confusion-fix-download").get_attribute("href"),
             what="the link to follow the controls")
    click(browser, browser.find_element(By.ID, "confusion-fix-download"))
    name = f"pss-confusion-{pair[0]}-{pair[1]}-prune-top5-salient.safetensors"
    deadline = time.monotonic() + 60
    while not (tmp_path / name).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / name).exists(), sorted(p.name for p in tmp_path.iterdir())
    expected = backend.client().post("/api/groups/export", json={"confusion": list(pair), **FIX_BODY, "top_k": 5,
                                                                  "intervention": "prune", "seed": 0}).content
    assert (tmp_path / name).read_bytes() == expected
