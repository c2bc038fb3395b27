"""The map page's pieces as functions: URL state, the subset sent for shared filters, the selection panel."""

import numpy as np

from app import map_figures as mf
from app.client import BackendError
from app.pages import map as page

NAMES = ["cat", "dog", "bird"]
POINTS = mf.MapPoints(np.array([3, 5, 8, 13]), np.zeros(4, np.float32), np.zeros(4, np.float32), np.array([0, 0, 1, 1]),
                      np.array([0, 0, 1, 2]), np.array([1, 1, 2, 0]))


class Answers:
    """Records what the panel asks for shared filters and answers it (or refuses)."""

    def __init__(self, error: BackendError | None = None):
        self.asked, self.error = [], error

    def selection_filters(self, ids, top):
        self.asked.append((ids, top))
        if self.error:
            raise self.error
        return {"count": len(ids), "top_filters": [{"filter": 7, "layer": "conv1.weight", "channel": 7, "mean_z": 2.5}]}


def test_url_state():
    assert page.url("pair", None) == ""
    assert page.url("mode", {"ids": [1], "source": "mode", "mode": 2}) == "?colour=mode&mode=2"
    assert page.url("pair", {"ids": [1], "source": "saliency", "mode": None}) == ""  # a lasso is not in the URL
    assert page.STATE.parse("?colour=mode&mode=4") == {"colour": "mode", "mode": 4}
    assert page.STATE.parse("?colour=pink&mode=x") == {"colour": "pair", "mode": None}


def test_spread_keeps_small_selections_and_thins_large_ones_evenly():
    small = np.arange(10)
    assert page.spread(small, 10) is small
    large = np.arange(0, 30_000, 3)
    kept = page.spread(large, 5000)
    assert kept.size == 5000 and np.unique(kept).size == 5000 and kept[0] == large[0] and kept[-1] == large[-1]
    assert np.ptp(np.diff(kept)) <= 3  # even gaps (one id step of rounding)


def test_selection_panel_names_the_mistakes_and_their_shared_filters():
    answers = Answers()
    panel = page.render_selection(answers, {"ids": [13, 3, 5, 5], "source": "feature", "mode": None}, POINTS, NAMES)
    words = repr(panel)
    assert "3 mistakes selected in feature space" in words
    assert "cat → dog (2)" in words and "bird → cat (1)" in words
    assert answers.asked == [([3, 5, 13], 10)]
    assert "conv1 #7" in words and "over the 3 selected" in words
    mode = page.render_selection(answers, {"ids": [8], "source": "mode", "mode": 1}, POINTS, NAMES)
    assert "Failure mode 1: 1 mistake'" in repr(mode)


def test_selection_panel_without_selection_or_backend():
    assert "Drag a lasso" in repr(page.render_selection(Answers(), None, POINTS, NAMES))
    failing = Answers(BackendError("no route", 404))
    words = repr(page.render_selection(failing, {"ids": [3], "source": "saliency"}, POINTS, NAMES))
    assert "Could not load the shared filters: no route" in words and "1 mistake selected in saliency space" in words


def test_fix_group_is_the_mode_or_the_lasso_within_the_group_cap():
    assert page.fix_group(None) is None
    assert page.fix_group({"ids": [4, 2], "source": "mode", "mode": 3}) == {"failure_mode": 3}
    assert page.fix_group({"ids": [5, 2, 5], "source": "saliency"}) == {"sample_ids": [2, 5]}
    assert page.fix_group({"ids": [], "source": "feature"}) is None
    too_many = list(range(page.MAX_GROUP + 1))
    assert page.fix_group({"ids": too_many, "source": "feature"}) is None
    assert page.fix_group({"ids": too_many[:-1], "source": "feature"}) == {"sample_ids": too_many[:-1]}
