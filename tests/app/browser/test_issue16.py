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
    browser.get(ui + "/mistakes?show=all&p=2")
    settle(browser, gallery_settled, "the gallery")
    assert "page 2 of 2" in page_label(browser)
    settle(browser, lambda d: query(d).get("p") == "2", "the URL to keep its page")
    browser.get(ui + "/mistakes?show=all&page=1")  # a link from before ?p= (counted from 0)
    settle(browser, lambda d: "page 2 of 2" in page_label(d), "an old link's page")
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
