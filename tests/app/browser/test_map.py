"""The mistake map (/map) in Chromium: both maps drawn with WebGL from the backend's map, colouring, hover
thumbnails, click-through, lasso and failure-mode selections with the filters they share, deep links, and a
map of 50,000 synthetic mistakes.

Expected answers come from the backend's own routes (the backend tests check those against the arrays).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from tests.app.browser.conftest import dashboard
from tests.app.browser.test_confusion_page import FIX_BODY, dataset_accuracy, expected_row, fix_rows
from tests.app.browser.test_issue16 import axe_violations
from tests.app.browser.test_walkthrough import click, idle, sample_ready, shot, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
SPACES = ("saliency", "feature")
PLOT = "const el = document.getElementById(arguments[0]); const gd = el && el.querySelector('.js-plotly-plot');"


def drawn(driver, space: str) -> dict | None:
    """What Plotly holds for one map: trace types and names, every point's id, and the highlighted ids (None:
    no highlight)."""
    return driver.execute_script(PLOT + """
        if (!gd || !gd._fullData || !gd._fullData.length) { return null; }
        const ids = [], chosen = [];
        let highlighted = false;
        for (const t of gd._fullData) {
            const data = Array.from(t.customdata || []);
            ids.push(...data);
            if (t.selectedpoints) { highlighted = true; for (const i of t.selectedpoints) { chosen.push(data[i]); } }
        }
        return {types: gd._fullData.map(t => t.type), names: gd._fullData.map(t => t.name),
                count: gd._fullData.reduce((s, t) => s + t._length, 0), ids: ids, chosen: highlighted ? chosen : null};
    """, f"map-{space}")


def map_ready(driver, count: int) -> bool:
    return idle(driver) and all((drawn(driver, s) or {}).get("count") == count for s in SPACES)


def query(driver) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(driver.current_url).query).items()}


def panel_title(driver) -> str:
    found = driver.find_elements(By.ID, "map-selection-title")
    return found[0].text if found else ""


def shared_filters(driver) -> list[int]:
    return [int(a.get_attribute("href").rsplit("/", 1)[1]) for a in driver.find_elements(By.CSS_SELECTOR, "#map-shared-filters a")]


def mode_button(driver, cluster: int):
    return driver.find_element(By.XPATH, f"""//button[@id='{{"index":{cluster},"type":"map-mode"}}']""")


def expected_filters(backend, ids) -> list[int]:
    answer = httpx.post(f"{backend.url}/api/selection/filters", json={"sample_ids": sorted(ids), "top": 10}, timeout=60)
    return [f["filter"] for f in answer.json()["top_filters"]]


@pytest.fixture(scope="module")
def truth(backend) -> dict:
    maps = {space: httpx.get(f"{backend.url}/api/map", params={"space": space, "format": "columns"}, timeout=60).json()
            for space in SPACES}
    return {"ids": maps["saliency"]["ids"], "modes": httpx.get(f"{backend.url}/api/failure-modes", timeout=60).json()}


def open_map(driver, ui: str, count: int, path: str = "/map") -> None:
    driver.get(ui + path)
    wait_for(driver, lambda d: map_ready(d, count), timeout=90, what="both maps")


def test_map_draws_every_mistake_in_both_spaces_with_webgl(browser, ui, truth, output_dir):
    open_map(browser, ui, len(truth["ids"]))
    for space in SPACES:
        got = drawn(browser, space)
        assert set(got["types"]) == {"scattergl"}
        assert sorted(got["ids"]) == truth["ids"] and got["chosen"] is None
    intro = browser.find_element(By.ID, "map-intro").text
    assert "Saliency space" in intro and "Feature space" in intro and "lasso" in intro
    assert browser.find_element(By.ID, "map-count").text == f"{len(truth['ids'])} mistakes"
    modes = browser.find_elements(By.CSS_SELECTOR, "#map-modes .map-mode")
    assert len(modes) == len(truth["modes"])
    for row, mode in zip(modes, truth["modes"]):
        assert f"Mode {mode['cluster']} · {mode['size']} mistake" in row.text
        links = [int(a.get_attribute("href").rsplit("/", 1)[1]) for a in row.find_elements(By.CSS_SELECTOR, "a.map-filter-link")]
        assert links == [f["filter"] for f in mode["top_filters"][:5]]
    shot(browser, output_dir, "map-open")


def test_colouring_by_failure_mode_splits_the_points_by_mode(browser, ui, truth):
    open_map(browser, ui, len(truth["ids"]))
    click(browser, browser.find_element(By.CSS_SELECTOR, "#map-colour input[value='mode']"))
    wait_for(browser, lambda d: query(d).get("colour") == "mode" and idle(d)
             and all(n.startswith("mode ") for n in drawn(d, "feature")["names"]), what="the maps coloured by mode")
    members = {f"mode {m['cluster']}": set(m["sample_ids"]) for m in truth["modes"]}
    for space in SPACES:
        got = browser.execute_script(PLOT + "return gd._fullData.map(t => [t.name, Array.from(t.customdata)])",
                                     f"map-{space}")
        assert {name: set(ids) for name, ids in got} == members


def test_a_failure_mode_highlights_its_mistakes_and_their_shared_filters(browser, ui, backend, truth):
    open_map(browser, ui, len(truth["ids"]))
    mode = truth["modes"][0]
    click(browser, mode_button(browser, mode["cluster"]))
    wait_for(browser, lambda d: panel_title(d).startswith(f"Failure mode {mode['cluster']}:") and idle(d)
             and all(drawn(d, s)["chosen"] is not None for s in SPACES), what="the mode's selection")
    for space in SPACES:
        assert sorted(drawn(browser, space)["chosen"]) == mode["sample_ids"]
    assert shared_filters(browser) == expected_filters(backend, mode["sample_ids"])
    thumbs = [int(a.get_attribute("href").rsplit("/", 1)[1]) for a in browser.find_elements(By.CSS_SELECTOR, "#map-thumbs a")]
    assert thumbs == mode["sample_ids"][:24]
    assert query(browser).get("mode") == str(mode["cluster"])
    assert "is-active" in mode_button(browser, mode["cluster"]).get_attribute("class")
    click(browser, browser.find_element(By.ID, "map-clear"))
    wait_for(browser, lambda d: not panel_title(d) and idle(d) and "mode" not in query(d)
             and all(drawn(d, s)["chosen"] is None for s in SPACES), what="the cleared selection")


def test_a_failure_mode_gets_the_fix_panel(browser, ui, backend, truth):
    """Issue 13: a failure mode is a group for the what-ifs; the panel's numbers are the group route's own."""
    mode = truth["modes"][0]
    open_map(browser, ui, len(truth["ids"]), f"/map?mode={mode['cluster']}")
    wait_for(browser, lambda d: panel_title(d).startswith(f"Failure mode {mode['cluster']}:") and idle(d),
             what="the linked mode")
    assert browser.find_element(By.ID, "map-fix-box").is_displayed()
    click(browser, browser.find_element(By.ID, "map-fix-run"))
    wait_for(browser, lambda d: len(fix_rows(d, "map")["dataset"]) == 3 and idle(d), timeout=300,
             what="the accuracies")
    answer = backend.client().post("/api/groups/prune", json={"failure_mode": mode["cluster"], **FIX_BODY}).json()
    rows = fix_rows(browser, "map")
    assert rows["group"] == expected_row(answer["group_accuracy"])
    assert rows["dataset"] == expected_row(dataset_accuracy(backend, answer))
    assert f"failure_mode={mode['cluster']}" in browser.find_element(By.ID, "map-fix-download").get_attribute("href")
    click(browser, browser.find_element(By.ID, "map-clear"))
    wait_for(browser, lambda d: not d.find_element(By.ID, "map-fix-box").is_displayed(), what="the panel hidden")


def test_deep_link_opens_a_highlighted_mode(browser, ui, truth):
    mode = truth["modes"][-1]
    open_map(browser, ui, len(truth["ids"]), f"/map?colour=mode&mode={mode['cluster']}")
    wait_for(browser, lambda d: panel_title(d).startswith(f"Failure mode {mode['cluster']}:"), what="the linked mode")
    assert browser.find_element(By.CSS_SELECTOR, "#map-colour input:checked").get_attribute("value") == "mode"
    for space in SPACES:
        got = drawn(browser, space)
        assert sorted(got["chosen"]) == mode["sample_ids"] and all(n.startswith("mode ") for n in got["names"])


def test_map_has_no_serious_accessibility_violations(browser, ui, truth):
    browser.set_script_timeout(60)
    open_map(browser, ui, len(truth["ids"]), f"/map?mode={truth['modes'][0]['cluster']}")
    wait_for(browser, lambda d: panel_title(d).startswith("Failure mode") and idle(d), what="the selection panel")
    found = axe_violations(browser)
    assert not found, "\n".join(f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in found)
    assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1


def box_select(driver, space: str, half: int) -> dict[int, float]:
    """Drags a lasso around a square of ``2 * half`` px at the map's centre; returns each dot's distance from
    that centre (the larger of its x and y offsets, in px), computed from Plotly's own axes."""
    plot = driver.execute_script(PLOT + "return gd", f"map-{space}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    ActionChains(driver).move_to_element_with_offset(plot, -half, -half).click_and_hold() \
        .move_by_offset(2 * half, 0).move_by_offset(0, 2 * half).move_by_offset(-2 * half, 0) \
        .move_by_offset(0, -2 * half).release().perform()
    return dict(driver.execute_script(PLOT + """
        const r = gd.getBoundingClientRect(), cx = r.left + r.width / 2, cy = r.top + r.height / 2;
        const fl = gd._fullLayout, out = [];
        for (const t of gd._fullData) {
            for (let i = 0; i < t._length; i++) {
                const px = r.left + fl._size.l + fl.xaxis.l2p(t.x[i]), py = r.top + fl._size.t + fl.yaxis.l2p(t.y[i]);
                out.push([t.customdata[i], Math.max(Math.abs(px - cx), Math.abs(py - cy))]);
            }
        }
        return out;""", f"map-{space}"))


def test_lasso_selects_mistakes_in_both_maps_and_shows_what_they_share(browser, ui, backend, truth, output_dir):
    open_map(browser, ui, len(truth["ids"]))
    offsets = box_select(browser, "saliency", 120)
    wait_for(browser, lambda d: "selected in saliency space" in panel_title(d) and idle(d)
             and drawn(d, "feature")["chosen"] is not None, what="the lasso's selection")
    chosen = set(drawn(browser, "saliency")["chosen"])
    inside = {i for i, d in offsets.items() if d < 118}
    near = {i for i, d in offsets.items() if d < 122}
    assert chosen and inside <= chosen <= near  # the dots inside the lasso (2 px of slack at its edge)
    assert set(drawn(browser, "feature")["chosen"]) == chosen  # the same mistakes light up in the other map
    assert panel_title(browser).startswith(f"{len(chosen)} mistake")
    assert shared_filters(browser) == expected_filters(backend, chosen)
    shot(browser, output_dir, "map-lasso")


def test_hover_shows_the_thumbnail_and_a_click_opens_the_sample(browser, ui, truth):
    open_map(browser, ui, len(truth["ids"]))
    plot = browser.execute_script(PLOT + "return gd", "map-saliency")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    x, y = browser.execute_script(PLOT + """
        const t = gd._fullData[gd._fullData.length - 1], fl = gd._fullLayout, r = gd.getBoundingClientRect();
        return [fl._size.l + fl.xaxis.l2p(t.x[0]) - r.width / 2, fl._size.t + fl.yaxis.l2p(t.y[0]) - r.height / 2];""",
        "map-saliency")
    ActionChains(browser).move_to_element_with_offset(plot, round(x), round(y)).perform()
    image = wait_for(browser, lambda d: d.execute_script(
        "const i = document.getElementById('map-saliency-tip-img');"
        "return i && i.offsetParent && i.complete && i.naturalWidth > 0 ? i.getAttribute('src') : null"),
        what="the hover thumbnail")
    hovered = int(image.split("/")[3])
    assert image == f"/media/samples/{hovered}/image.png" and hovered in truth["ids"]
    ActionChains(browser).click().perform()
    wait_for(browser, lambda d: urlparse(d.current_url).path == f"/sample/{hovered}" and sample_ready(d),
             what="the sample page of the clicked dot")


# ------------------------------------------------------------------------------ 50,000 mistakes
@pytest.fixture(scope="module")
def large_ui(tiny_artifacts_dir, tmp_path_factory):
    """A real backend over a dir with 50,000 synthetic mistakes, and a UI on it."""
    from tests.backend.api.large_map import grow

    with dashboard(grow(tiny_artifacts_dir, tmp_path_factory.mktemp("large-map") / "artifacts")) as pair:
        yield pair


def test_fifty_thousand_mistakes_render_and_a_large_lasso_still_answers(browser, large_ui, timings, output_dir):
    ui, backend = large_ui
    ids = httpx.get(f"{backend.url}/api/map", params={"format": "columns"}, timeout=60).json()["ids"]
    assert len(ids) == 50_000
    started = time.perf_counter()
    open_map(browser, ui, 50_000)
    timings.setdefault("map: 50,000 points, open to drawn", []).append(round(time.perf_counter() - started, 3))
    for space in SPACES:
        got = drawn(browser, space)
        assert set(got["types"]) == {"scattergl"} and got["count"] == 50_000 and sorted(got["ids"]) == ids
    started = time.perf_counter()
    box_select(browser, "saliency", 170)
    wait_for(browser, lambda d: "selected in saliency space" in panel_title(d) and idle(d), timeout=120,
             what="the large selection")
    timings.setdefault("map: 50,000 points, lasso to shared filters", []).append(round(time.perf_counter() - started, 3))
    chosen = drawn(browser, "saliency")["chosen"]
    assert len(chosen) > 5000, "the lasso should take more mistakes than one shared-filter request holds"
    note = browser.find_element(By.ID, "map-selection-panel").text
    assert f"over 5,000 of the {len(chosen):,} selected" in note and len(shared_filters(browser)) == 10
    shot(browser, output_dir, "map-50k")
