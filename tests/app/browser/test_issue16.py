"""Issue 16's defects, each reproduced in a real browser: gallery paging, pruning display and links, filter
clicks, boost and out-of-distribution honesty, names, narrow windows, outages and accessibility.

Each test failed on the code before the fix (run against that commit) and passes after it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.app.browser.test_walkthrough import click, idle, sample_ready, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def query(driver) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(driver.current_url).query).items()}


def gallery_settled(driver) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, "#gallery-results a.thumb")) and idle(driver)


def page_label(driver) -> str:
    return driver.find_element(By.ID, "gallery-page-label").text


def settle(driver, condition=None, what="the page"):
    wait_for(driver, lambda d: idle(d) and (condition is None or condition(d)), what=what)


# ----------------------------------------------------------------------------- 1 and 11: the gallery
def test_gallery_keeps_its_page_whatever_the_way_back(browser, ui):
    browser.get(ui + "/mistakes?show=all&page=1")  # a link from before ?p= (counted from 0)
    settle(browser, gallery_settled, "the gallery")
    assert "page 2 of 2" in page_label(browser)
    browser.get(ui + "/mistakes?show=all&p=2")
    settle(browser, gallery_settled, "the gallery")
    assert "page 2 of 2" in page_label(browser)
    settle(browser, lambda d: query(d).get("p") == "2", "the URL to keep its page")
    browser.get(ui + "/mistakes?show=all")
    settle(browser, gallery_settled, "the gallery")
    click(browser, browser.find_element(By.ID, "gallery-next"))
    settle(browser, lambda d: query(d).get("p") == "2" and "page 2 of 2" in page_label(d), "the next page")
    browser.refresh()
    settle(browser, lambda d: gallery_settled(d) and "page 2 of 2" in page_label(d), "the reloaded page")
    assert query(browser).get("p") == "2"
    tile = browser.find_element(By.CSS_SELECTOR, "#gallery-results a.thumb")
    click(browser, tile)
    settle(browser, lambda d: d.find_elements(By.ID, "sample-back"), "the sample view")
    click(browser, browser.find_element(By.ID, "sample-back"))
    settle(browser, lambda d: gallery_settled(d) and "page 2 of 2" in page_label(d), "the gallery page we left")
    assert query(browser).get("p") == "2"
    browser.back()
    browser.back()
    settle(browser, lambda d: gallery_settled(d) and urlparse(d.current_url).path == "/mistakes", "history")
    assert "page 2 of 2" in page_label(browser) and query(browser).get("p") == "2"


def test_gallery_pager_below_title_and_tile_ids(browser, ui):
    browser.get(ui + "/mistakes?show=all")
    settle(browser, gallery_settled, "the gallery")
    assert browser.find_element(By.ID, "gallery-title").text == "All samples"
    tile = browser.find_element(By.CSS_SELECTOR, "#gallery-results a.thumb")
    sample_id = tile.get_attribute("href").rsplit("/", 1)[1]
    assert f"#{sample_id}" in tile.text
    bottom = browser.find_element(By.ID, "gallery-next-bottom")
    assert bottom.location["y"] > tile.location["y"]  # below the grid
    click(browser, bottom)
    settle(browser, lambda d: "page 2 of 2" in d.find_element(By.ID, "gallery-page-label-bottom").text, "page 2")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#gallery-show input[value='correct']"))
    settle(browser, lambda d: d.find_element(By.ID, "gallery-title").text == "Correctly classified samples",
           "the title to follow the selection")


# ------------------------------------------------------------------------- 2 and 3: pruning, shown and linked
def checked_ids(driver) -> list[int]:
    return sorted(int(e.get_attribute("value")) for e in
                  driver.find_elements(By.CSS_SELECTOR, "#sample-prune-check input:checked, #sample-prune-extra input:checked"))


def summary(driver) -> str:
    found = driver.find_elements(By.ID, "sample-prune-summary")
    return found[0].text if found else ""


def red_bars(driver) -> list[int]:
    """The bars drawn in the 'switched off' colour, as filter ids."""
    return sorted(driver.execute_script("""
        const gd = document.querySelector('#sample-filters-graph .js-plotly-plot'), bar = gd.data[0];
        const colours = Array.isArray(bar.marker.color) ? bar.marker.color : [];
        return bar.customdata.filter((f, i) => colours[i] === arguments[0]);""", "#c2410c"))


def pruned_names(driver) -> list[str]:
    return driver.find_element(By.ID, "sample-pruned-list").text.removeprefix("switched off: ").split(", ")


def test_random_pruning_shows_the_filters_it_switched_off_and_draws_again(browser, ui):
    browser.get(ui + "/sample/5?prune=3")
    settle(browser, lambda d: sample_ready(d) and summary(d).startswith("3 filters off"), "the pruned sample")
    top3 = checked_ids(browser)
    assert len(top3) == 3 and red_bars(browser) == top3
    click(browser, browser.find_element(By.XPATH, "//div[@id='sample-prune-mode']//label[contains(., 'random')]"))
    settle(browser, lambda d: "mode=random" in d.current_url and summary(d).startswith("3 filters off")
           and checked_ids(d) != top3, "the random draw")
    drawn = checked_ids(browser)
    assert len(drawn) == 3
    # the ticked boxes are the filters the backend switched off, named as in the summary, and only they are red
    labels = [e.find_element(By.XPATH, "./ancestor::label").find_element(By.CSS_SELECTOR, ".check-name")
              .get_attribute("title").split(" (filter id")[0]
              for e in browser.find_elements(By.CSS_SELECTOR, "#sample-prune-check input:checked, #sample-prune-extra input:checked")]
    assert sorted(labels) == sorted(pruned_names(browser))
    assert set(red_bars(browser)) == set(drawn) & set(browser.execute_script(
        "return document.querySelector('#sample-filters-graph .js-plotly-plot').data[0].customdata"))
    click(browser, browser.find_element(By.ID, "sample-prune-draw"))
    settle(browser, lambda d: query(d).get("seed") == "1" and checked_ids(d) != drawn, "another draw")
    second = checked_ids(browser)
    browser.refresh()  # the link reproduces the draw
    settle(browser, lambda d: sample_ready(d) and summary(d).startswith("3 filters off"), "the linked draw")
    assert checked_ids(browser) == second


def test_hand_ticked_filters_survive_the_link(browser, ui):
    browser.get(ui + "/sample/5?prune=4")
    settle(browser, lambda d: sample_ready(d) and summary(d).startswith("4 filters off"), "4 filters off")
    fifth = browser.find_elements(By.CSS_SELECTOR, "#sample-prune-check input:not(:checked)")[3]
    click(browser, fifth.find_element(By.XPATH, "./ancestor::label"))
    settle(browser, lambda d: summary(d).startswith("5 filters off") and "off=" in d.current_url, "5 filters off")
    ticked = checked_ids(browser)
    assert sorted(int(i) for i in query(browser)["off"].split(",")) == ticked
    slider = "#sample-prune-k .dash-slider-thumb"
    assert browser.find_element(By.CSS_SELECTOR, slider).get_attribute("aria-valuenow") == "5"
    link = browser.current_url
    before = browser.find_element(By.ID, "sample-prune-summary").text
    browser.get(ui + "/")
    browser.get(link)
    settle(browser, lambda d: sample_ready(d) and summary(d).startswith("5 filters off"), "the link")
    assert checked_ids(browser) == ticked and summary(browser) == before
    assert browser.find_element(By.CSS_SELECTOR, slider).get_attribute("aria-valuenow") == "5"


# --------------------------------------------------------------------------------- 4: clicking a filter
def bar_outlines(driver) -> list[int]:
    return driver.execute_script("""const bar = document.querySelector('#sample-filters-graph .js-plotly-plot').data[0];
        const w = bar.marker.line && bar.marker.line.width; return Array.isArray(w) ? w : [];""")


def test_a_filter_click_answers_beside_the_chart_marks_the_bar_and_works_by_keyboard(browser, ui):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(ui + "/sample/5")
    settle(browser, sample_ready, "the sample view")
    bar = browser.find_elements(By.CSS_SELECTOR, "#sample-filters-graph .bars .point path")[1]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", bar)
    ActionChains(browser).move_to_element(bar).pause(0.3).click().perform()
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sample-filter-mistakes .strip-title"), "the answer")
    chosen = browser.execute_script(
        "return document.querySelector('#sample-filters-graph .js-plotly-plot').data[0].customdata[1]")
    assert bar_outlines(browser)[1] == 3 and sum(bar_outlines(browser)) == 3
    assert query(browser)["filter"] == str(chosen)
    answer = browser.find_element(By.ID, "sample-filter-mistakes")
    card = answer.find_element(By.XPATH, "./ancestor::div[contains(@class, 'card')][1]")
    assert card.find_elements(By.ID, "sample-filters-graph")  # in the chart's own card
    # the answer is in view (or scrolled to)
    # (waiting for the scroll to finish: it is animated)
    in_view = "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.top < window.innerHeight"
    wait_for(browser, lambda d: d.execute_script(in_view, answer), timeout=5, what="the answer scrolled into view")
    # the answer says what it searched: the whole dataset (the backend's /api/filters/{index})
    assert "in the whole dataset" in answer.text
    # keyboard: the table's buttons choose a filter too
    browser.find_element(By.CSS_SELECTOR, "#sample-filters-table").find_element(By.XPATH, "./ancestor::details/summary").click()
    button = browser.find_elements(By.CSS_SELECTOR, "#sample-filters-table button")[3]
    browser.execute_script("arguments[0].focus()", button)
    button.send_keys(Keys.ENTER)
    fourth = browser.execute_script(
        "return document.querySelector('#sample-filters-graph .js-plotly-plot').data[0].customdata[3]")
    settle(browser, lambda d: query(d).get("filter") == str(fourth) and bar_outlines(d)[3] == 3, "the keyed filter")
    # the link reopens the answer
    link = browser.current_url
    browser.get(ui + "/")
    browser.get(link)
    settle(browser, lambda d: sample_ready(d) and d.find_elements(By.CSS_SELECTOR, "#sample-filter-mistakes .strip-title")
           and bar_outlines(d)[3] == 3, "the linked answer")


# ------------------------------------------------------------------------------------ 9: backend outage
def test_an_outage_shows_one_banner_that_clears_itself(browser, ui_artifacts):
    import threading

    from werkzeug.serving import make_server

    from app.main import create_dash_app
    from backend.api.settings import Settings
    from tests.backend.api.conftest import free_port, start_server, stop_server

    settings = Settings(artifacts=ui_artifacts, device="cpu", port=free_port())
    backend = start_server(settings)
    server = make_server("127.0.0.1", free_port(), create_dash_app(backend.url).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    own_ui = f"http://127.0.0.1:{server.server_port}"
    try:
        browser.get(own_ui + "/mistakes")
        settle(browser, gallery_settled, "the gallery")
        stop_server(backend)
        browser.get(own_ui + "/mistakes")  # a panel that needs the backend now
        message = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".page .alert"), what="a message")[0]
        assert "pss serve" in message.text and "127.0.0.1" not in message.text and "Error)" not in message.text
        banner = wait_for(browser, lambda d: [b for b in d.find_elements(By.ID, "backend-banner") if b.is_displayed()],
                          timeout=20, what="the banner")[0]
        assert "unreachable, retrying" in banner.text
        assert len([b for b in browser.find_elements(By.CSS_SELECTOR, ".banner") if b.is_displayed()]) == 1
        # the header no longer claims a model it cannot reach
        assert "offline" in browser.find_element(By.ID, "header-model").text
        backend = start_server(settings)  # the same address again
        wait_for(browser, lambda d: gallery_settled(d) and not d.find_element(By.ID, "backend-banner").is_displayed(),
                 timeout=60, what="the page to recover by itself")
        assert "offline" not in browser.find_element(By.ID, "header-model").text
    finally:
        server.shutdown()
        thread.join(timeout=10)
        stop_server(backend)


# ----------------------------------------------------------------------- 6: uploads unlike the dataset
def test_an_upload_unlike_the_dataset_is_flagged(browser, ui, backend, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    noise = (rng.random((64, 64, 3)) * 255).astype(np.uint8)  # nothing like a garment
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    browser.get(ui + "/upload")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload-drop input[type=file]"), what="upload box")
    browser.find_element(By.CSS_SELECTOR, "#upload-drop input[type=file]").send_keys(str(path))
    wait_for(browser, lambda d: re.fullmatch(r"/upload/\d+", urlparse(d.current_url).path), what="the upload view")
    settle(browser, sample_ready, "the upload's view")
    upload_id = urlparse(browser.current_url).path.rsplit("/", 1)[1]
    import httpx

    measured = httpx.get(f"{backend.url}/api/uploads/{upload_id}/typicality").json()
    print("typicality of the noise upload:", measured)
    notices = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".alert-warn")]
    assert measured["percentile"] < 1.0
    assert any("unlike the dataset" in n for n in notices), notices


# ------------------------------------------------------------------------- 5: what the boost does
def test_boost_one_says_no_signal_and_the_map_has_a_colour_scale(browser, ui):
    browser.get(ui + "/sample/5?boost=1")
    settle(browser, lambda d: d.find_elements(By.ID, "sample-no-signal"), "the no-signal notice")
    assert not browser.find_elements(By.CSS_SELECTOR, "#sample-overlay img")
    assert "barely changes" in browser.find_element(By.ID, "sample-boost-hint").text
    scale = browser.find_element(By.ID, "sample-colour-scale")
    assert scale.is_displayed() and "low" in scale.text and "high" in scale.text
    browser.get(ui + "/sample/5?boost=100")
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sample-overlay img.big-img"), "the map")


# -------------------------------------------------------------------------------- 7: one name per filter
def hover_text(driver, graph: str, trace: int, point: int) -> str:
    """The hover label Plotly draws for one point (hovered by the library's own Fx, like a mouse would)."""
    return driver.execute_script("""
        const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
        Plotly.Fx.hover(gd, [{curveNumber: arguments[1], pointNumber: arguments[2]}]);
        const label = gd.querySelector('.hoverlayer .hovertext');
        return label ? label.textContent : '';""", graph, trace, point)


def test_filters_have_one_name_everywhere_and_figure_2_says_it_is_sorted(browser, ui):
    browser.get(ui + "/sample/5")
    settle(browser, sample_ready, "the sample view")
    bar_name = browser.execute_script("return document.querySelector('#sample-filters-graph .js-plotly-plot').data[0].y[0]")
    top_id = browser.execute_script(
        "return document.querySelector('#sample-filters-graph .js-plotly-plot').data[0].customdata[0]")
    data = browser.execute_script("""const d = document.querySelector('#sample-profile-graph .js-plotly-plot')._fullData;
        return d.map(t => [Number(t.x[0]), t.x.length, t.name]);""")
    trace, point = next((i, top_id - start) for i, (start, n, name) in enumerate(data)
                        if name != "top filters" and start <= top_id < start + n)
    text = hover_text(browser, "#sample-profile-graph", trace, point)
    assert bar_name in text and f"filter id {top_id}" in text, (bar_name, text)
    browser.get(ui + "/")
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#overview-fig2-box .js-plotly-plot"), "Figure 2")
    assert "sorted" in browser.find_element(By.ID, "overview-fig2-note").text
    first_layer = browser.execute_script(
        "return document.querySelector('#overview-fig2-box .js-plotly-plot').data[0].text[0]").split(",")[0]
    assert first_layer in hover_text(browser, "#overview-fig2-box", 0, 0)


# ------------------------------------------------------------------------------------ 8: narrow windows
def set_width(driver, width: int, height: int = 1000) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def cut_off(driver, selector: str) -> list[str]:
    """Texts under ``selector`` that do not fit their box (ellipsis or clipped)."""
    return driver.execute_script("""return Array.from(document.querySelectorAll(arguments[0]))
        .filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);""", selector)


@pytest.mark.parametrize("width", [800, 1400])
def test_narrow_and_wide_windows_keep_everything_readable(browser, ui, width):
    try:
        set_width(browser, width)
        browser.get(ui + "/sample/5?prune=2")
        settle(browser, sample_ready, "the sample view")
        first, second = browser.find_elements(By.CSS_SELECTOR, ".page-sample > .row")[0].find_elements(
            By.XPATH, "./div[contains(@class, 'card')]")
        stacked = second.location["y"] >= first.location["y"] + first.size["height"]
        assert stacked == (width < 1000)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#sample-prune-check .check-name")]
        assert len(set(names)) == len(names) and not cut_off(browser, "#sample-prune-check .check-name")
        assert not cut_off(browser, "#header-model .chip")
    finally:
        set_width(browser, 1280, 800)


# ------------------------------------------------------------------------------------- 10: accessibility
AXE = __import__("pathlib").Path(__file__).resolve().parents[3] / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(driver) -> list[dict]:
    """axe-core's serious and critical violations on the current page (WCAG 2.x A/AA rules and best practice)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run scripts/setup.sh (npm ci)")
    driver.execute_script(AXE.read_text())
    found = driver.execute_async_script("""const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("path", ["/", "/mistakes", "/sample/5?prune=2", "/sample/5?prune=3&mode=random&filter=61",
                                  "/upload", "/experiments", "/nowhere"])
def test_no_serious_accessibility_violations(browser, ui, path):
    browser.set_script_timeout(60)
    browser.get(ui + path)
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".page") and (not path.startswith("/sample")
                                                                            or sample_ready(d)), path)
    found = axe_violations(browser)
    assert not found, "\n".join(f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in found)
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1


def test_keyboard_reaches_every_confusion_cell_and_the_upload(browser, ui):
    browser.get(ui + "/")
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#overview-confusion .heatmaplayer"), "the matrix")
    table = browser.find_element(By.ID, "overview-confusion-table")
    summary = table.find_element(By.XPATH, "./ancestor::details").find_element(By.TAG_NAME, "summary")
    browser.execute_script("arguments[0].focus()", summary)
    summary.send_keys(Keys.ENTER)  # opens the table
    links = table.find_elements(By.CSS_SELECTOR, "td a")
    classes = len(table.find_elements(By.CSS_SELECTOR, "tbody tr"))
    assert len(links) == classes * classes
    browser.execute_script("arguments[0].focus()", links[1])  # true 0, predicted 1
    links[1].send_keys(Keys.ENTER)
    settle(browser, lambda d: urlparse(d.current_url).path == "/confusion/0/1", "the cell's confusion page")
    assert browser.find_elements(By.CSS_SELECTOR, ".page h1")
    browser.get(ui + "/upload")
    settle(browser, lambda d: d.find_elements(By.ID, "upload-choose"), "the upload page")
    # Tab from the class dropdown lands on the visible "choose a file" button, not an invisible input
    focused = []
    body = browser.find_element(By.TAG_NAME, "body")
    for _ in range(12):
        body.send_keys(Keys.TAB) if not focused else browser.switch_to.active_element.send_keys(Keys.TAB)
        focused.append(browser.execute_script("const e = document.activeElement; return e.id || e.type || e.tagName"))
        if focused[-1] == "upload-choose":
            break
    assert "upload-choose" in focused and "file" not in focused, focused


# ------------------------------------------------------------------------- 11: the experiments page
def test_experiments_empty_state_is_one_box_with_the_real_command(browser, ui, ui_artifacts):
    browser.get(ui + "/experiments")
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".page-experiments"), "the experiments page")
    text = browser.find_element(By.CSS_SELECTOR, ".page-experiments").text
    assert f"pss experiments --artifacts {ui_artifacts}" in text and "DIR" not in text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".page-experiments .card")) == 1
