"""The filter page (/filter/<index>) in a real browser over the real backend: a deep link with every section and
its thumbnails loaded, a tile through to its sample, a bar and a profile point of the sample page through to
the filter page, bad indices as messages, and no serious accessibility violations."""

from __future__ import annotations

import time

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from app.pages import filter as filter_page
from tests.app.browser.test_issue16 import axe_violations, set_width, settle
from tests.app.browser.test_walkthrough import centre, sample_ready, shot, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SECTIONS = ("#filter-position-graph .bars .point", "#filter-distribution-graph .bars .point",
            "#filter-classes-graph .bars .point", "#filter-confusions-graph .bars .point")


def maps_loaded(driver) -> bool:
    """Every filter map of the reference tiles has arrived and decoded (none broken)."""
    return driver.execute_script("""const maps = [...document.querySelectorAll('#filter-references img.thumb-map')];
        return maps.length > 0 && maps.every(m => m.complete && m.naturalWidth > 0);""")


def sections_drawn(driver) -> bool:
    return bool(driver.find_elements(By.ID, "filter-title")
                and all(driver.find_elements(By.CSS_SELECTOR, s) for s in SECTIONS))


def filter_page_ready(driver) -> bool:
    return sections_drawn(driver) and maps_loaded(driver)


def tile_ids(driver, kind: str) -> list[int]:
    return [int(a.get_attribute("href").rsplit("/", 1)[1])
            for a in driver.find_elements(By.CSS_SELECTOR, f"#filter-{kind}-samples a.thumb")]


@pytest.fixture(scope="module")
def num_filters(backend) -> int:
    return int(httpx.get(f"{backend.url}/api/info", timeout=30).json()["num_filters"])


def test_deep_link_shows_every_section_and_a_tile_opens_its_sample(browser, ui, backend, num_filters, output_dir,
                                                                   timings):
    chosen = num_filters // 2
    expected = httpx.get(f"{backend.url}/api/filters/{chosen}", timeout=30).json()
    for visit, index in (("first", num_filters // 3), ("second", chosen)):  # the first also loads the app
        start = time.perf_counter()
        browser.get(f"{ui}/filter/{index}")
        wait_for(browser, lambda d: sections_drawn(d) and d.current_url.endswith(f"/filter/{index}"), timeout=60,
                 what="the filter page's sections")
        drawn = time.perf_counter() - start
        wait_for(browser, filter_page_ready, timeout=60, what="the filter page with every map")
        timings.setdefault(f"filter page, {visit} deep link: sections drawn", []).append(round(drawn, 3))
        timings.setdefault(f"filter page, {visit} deep link: every map loaded", []).append(
            round(time.perf_counter() - start, 3))
    shot(browser, output_dir, "filter-page")
    assert f"filter id {chosen}" in browser.find_element(By.CSS_SELECTOR, ".page-title").text
    assert browser.title == f"Filter {chosen}"
    assert browser.find_element(By.ID, "filter-explained").text.startswith("A filter is one output channel")
    assert f"output channel {expected['channel']}" in browser.find_element(By.ID, "filter-where").text
    shown = filter_page.SHOWN
    assert tile_ids(browser, "salient") == [s["id"] for s in expected["top_samples"][:shown]]
    assert tile_ids(browser, "activating") == [s["id"] for s in expected["top_activating"][:shown]]
    maps = browser.find_elements(By.CSS_SELECTOR, "#filter-salient-samples img.thumb-map")
    assert maps[0].get_attribute("src").endswith(f"/media/samples/{expected['top_samples'][0]['id']}"
                                                 f"/filter-map.png?filter={chosen}")
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#filter-confusions-table a")]
    assert [link.split("/confusion/", 1)[1] for link in links] == \
        [f"{c['true']}/{c['pred']}" for c in expected["confusions"][:filter_page.LINKED_CONFUSIONS]]

    first = expected["top_activating"][0]["id"]
    centre(browser, browser.find_elements(By.CSS_SELECTOR, "#filter-activating-samples a.thumb")[0]).click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/sample/{first}") and sample_ready(d), timeout=60,
             what="the tile's sample page")
    assert f"Sample #{first}" in browser.find_element(By.CSS_SELECTOR, ".sample-header h1").text


def follow_filter_link(browser, filter_id: int) -> None:
    link = browser.find_element(By.ID, "sample-filter-page-link")
    assert link.get_attribute("href").endswith(f"/filter/{filter_id}")
    centre(browser, link).click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/filter/{filter_id}") and filter_page_ready(d), timeout=60,
             what=f"the page of filter {filter_id}")
    assert f"filter id {filter_id}" in browser.find_element(By.CSS_SELECTOR, ".page-title").text


def test_a_bar_and_a_profile_point_lead_to_the_filter_page(browser, ui, backend):
    browser.get(f"{ui}/sample/5")
    settle(browser, sample_ready, "the sample view")
    bar_name = browser.execute_script("return document.querySelector('#sample-filters-graph .js-plotly-plot').data[0]"
                                      ".hovertext[2]")
    bar_filter = browser.execute_script("return document.querySelector('#sample-filters-graph .js-plotly-plot')"
                                        ".data[0].customdata[2]")
    bar = centre(browser, browser.find_elements(By.CSS_SELECTOR, "#sample-filters-graph .bars .point path")[2])
    ActionChains(browser).move_to_element(bar).pause(0.3).click().perform()
    settle(browser, lambda d: d.find_elements(By.ID, "sample-filter-page-link"), "the bar's answer")
    follow_filter_link(browser, bar_filter)
    assert browser.find_element(By.ID, "filter-title").text == f"Filter {bar_name}"

    browser.back()
    settle(browser, sample_ready, "the sample view again")
    # the profile's red dots are its top filters; the last one is the 10th most salient
    dots = browser.find_elements(By.CSS_SELECTOR, "#sample-profile-graph .scatterlayer .trace:last-child .point")
    top = httpx.get(f"{backend.url}/api/samples/5/filters", params={"top": len(dots)}, timeout=30).json()
    dot_filter = top[-1]["filter"]
    assert dot_filter != bar_filter
    ActionChains(browser).move_to_element(centre(browser, dots[-1])).pause(0.3).click().perform()
    settle(browser, lambda d: d.find_elements(By.ID, "sample-filter-page-link") and d.find_element(
        By.ID, "sample-filter-page-link").get_attribute("href").endswith(f"/filter/{dot_filter}"), "the point's answer")
    follow_filter_link(browser, dot_filter)


@pytest.mark.parametrize("index, words", [("abc", "is not a filter id"), ("99999", "There is no filter 99999")])
def test_bad_index_is_a_message_on_the_page(browser, ui, index, words):
    browser.get(f"{ui}/filter/{index}")
    settle(browser, lambda d: d.find_elements(By.ID, "filter-bad-index"), "the message")
    assert words in browser.find_element(By.CSS_SELECTOR, ".alert").text
    assert browser.find_element(By.TAG_NAME, "h1").text == "No such filter"


def test_no_serious_accessibility_violations(browser, ui, num_filters):
    browser.set_script_timeout(60)
    browser.get(f"{ui}/filter/{num_filters - 1}")
    wait_for(browser, filter_page_ready, timeout=60, what="the filter page")
    found = axe_violations(browser)
    assert not found, "\n".join(f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in found)
    assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1


@pytest.mark.parametrize("width", [800, 1400])
def test_narrow_and_wide_windows_fit(browser, ui, num_filters, width):
    try:
        set_width(browser, width)
        browser.get(f"{ui}/filter/{num_filters - 2}")
        wait_for(browser, filter_page_ready, timeout=60, what="the filter page")
        classes, confusions = (browser.find_element(By.ID, f"filter-{name}") for name in ("classes", "confusions"))
        stacked = confusions.location["y"] >= classes.location["y"] + classes.size["height"]
        assert stacked == (width < 1000)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    finally:
        set_width(browser, 1280, 800)
