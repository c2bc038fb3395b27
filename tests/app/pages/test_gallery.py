"""Gallery callbacks as functions: URL state, server-side paging and the confidence window."""

import numpy as np

from app.pages import gallery


def _state(**changes) -> dict:
    return {"true_class": None, "pred_class": None, "show": "mistakes", "min_conf": 0.0, "max_conf": 1.0, "page": 0,
            **changes}


def test_query_round_trip():
    state = _state(true_class=1, pred_class=2, show="all", min_conf=0.25, max_conf=0.9, page=3)
    assert gallery.build_query(state) == "?true=1&pred=2&show=all&min_conf=0.25&max_conf=0.9&p=4"
    assert gallery.parse_query(gallery.build_query(state)) == state
    assert gallery.build_query(_state()) == ""


def test_page_numbers_count_from_one_and_old_links_still_open_their_page():
    assert gallery.parse_query("?p=3")["page"] == 2
    assert gallery.parse_query("?page=2")["page"] == 2  # links written before ?p= counted from 0
    assert gallery.parse_query("?p=1&page=7")["page"] == 0  # the new key wins


def test_only_a_lone_button_press_or_a_real_filter_change_moves_the_page():
    buttons = {"gallery-prev": -1, "gallery-next": 1, "gallery-prev-bottom": -1, "gallery-next-bottom": 1}
    filters = gallery.filter_key(_state())
    memory = {"page": 3, "filters": filters}
    # the router inserting the page: several inputs "changed", so no lone trigger
    assert gallery.next_page(memory, filters, None, buttons) == 3
    assert gallery.next_page(memory, filters, "gallery-next-bottom", buttons) == 4
    assert gallery.next_page(memory, filters, "gallery-prev", buttons) == 2
    assert gallery.next_page({"page": 0, "filters": filters}, filters, "gallery-prev", buttons) == 0
    changed = gallery.filter_key(_state(true_class=2))
    assert gallery.next_page(memory, changed, "gallery-true", buttons) == 0
    assert gallery.next_page(memory, filters, "gallery-true", buttons) == 3  # the same value again


def test_bad_query_values_fall_back():
    state = gallery.parse_query("?true=x&show=nope&min_conf=2&page=-4&p=0")
    assert state == _state(min_conf=1.0, max_conf=1.0)
    assert gallery.parse_query("?true=2&pred=2")["show"] == "correct"
    assert gallery.parse_query({"true": "2", "pred": ["1", "2"]})["pred_class"] == 1  # Dash's split query


def _expected(fake, show, low, high):
    ids = np.arange(len(fake.labels))
    if show == "mistakes":
        ids = ids[fake.labels[ids] != fake.preds[ids]]
    ids = ids[np.argsort(-fake.confidence[ids], kind="stable")]
    return [int(i) for i in ids if low <= fake.confidence[i] <= high]


def test_confidence_window_matches_a_direct_filter(client, fake, monkeypatch):
    monkeypatch.setattr(gallery, "PAGE_SIZE", 4)
    for low, high in [(0.0, 1.0), (0.5, 1.0), (0.0, 0.6), (0.45, 0.8), (0.99, 1.0)]:
        expected = _expected(fake, "all", low, high)
        got, page = [], 0
        while True:
            total, items = gallery.fetch_page(client, _state(show="all", min_conf=low, max_conf=high, page=page))
            assert total == len(expected)
            if not items:
                break
            got += [it["id"] for it in items]
            page += 1
        assert got == expected, (low, high)


def test_render_results_pages_and_clamps(client, fake, monkeypatch):
    monkeypatch.setattr(gallery, "PAGE_SIZE", 5)
    mistakes = _expected(fake, "mistakes", 0, 1)
    state = _state(page=99)
    grid, label, no_prev, no_next, page = gallery.render_results(client, state)
    pages = -(-len(mistakes) // 5)
    assert page == pages - 1 and no_next and not no_prev
    assert f"{len(mistakes)} mistakes · page {pages} of {pages}" in label
    assert "/sample/" in str(grid)


def test_render_results_backend_error(client, fake):
    fake.overrides["/api/samples"] = (422, {"detail": "true_class must be in [0, 2], got 7"})
    grid, label, *_ = gallery.render_results(client, _state(true_class=7))
    assert "true_class must be in [0, 2]" in str(grid)


def test_confidence_window_needs_logarithmically_many_requests(monkeypatch):
    """With 20,000 samples a filtered page costs about 2·log2(n) tiny requests, not a scan."""
    from app.client import BackendClient

    from ..fake_backend import FakeBackend

    fake = FakeBackend(num_samples=20000).start()
    try:
        client = BackendClient(fake.url)
        total, items = gallery.fetch_page(client, _state(show="all", min_conf=0.5, max_conf=0.9, page=3))
        assert len(fake.requests) <= 2 * 15 + 2
        expected = _expected(fake, "all", 0.5, 0.9)
        assert total == len(expected)
        assert [it["id"] for it in items] == expected[3 * gallery.PAGE_SIZE:4 * gallery.PAGE_SIZE]
    finally:
        fake.stop()
