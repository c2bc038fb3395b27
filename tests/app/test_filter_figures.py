"""The filter page's figures are pure functions of the backend's arrays: checked trace by trace."""

import numpy as np
import pytest

from app import filter_figures
from app.figures import ACCENT, MUTED

LAYERS = [("conv1.weight", 0, 4), ("layer1.conv.weight", 4, 10), ("fc_conv.weight", 10, 12)]
NAMES = ["cat", "dog", "bird"]


def annotation_text(fig) -> str:
    return " ".join(a.text for a in fig.layout.annotations)


def test_layer_of():
    assert [filter_figures.layer_of(LAYERS, f) for f in (0, 3, 4, 9, 10, 11)] == [0, 0, 1, 1, 2, 2]
    assert filter_figures.layer_of(LAYERS, 12) is None and filter_figures.layer_of(LAYERS, -1) is None


def test_position_highlights_the_layer_and_marks_the_channel():
    fig = filter_figures.position_figure(LAYERS, 7)
    bars, marker = fig.data
    assert list(bars.y) == [4, 6, 2] and list(bars.hovertext) == [n for n, _, _ in LAYERS]
    assert [c == ACCENT for c in bars.marker.color] == [False, True, False]
    assert list(marker.x) == [1] and list(marker.y) == [3.5]  # channel 3 of layer 1, at its bar's height
    assert "channel 3 of 6" in marker.hovertemplate
    assert 1 in fig.layout.xaxis.tickvals  # the filter's layer is always labelled
    empty = filter_figures.position_figure(LAYERS, 12)
    assert not empty.data and "no layer holds filter 12" in annotation_text(empty)


def test_distribution_shares_each_group_of_itself_on_shared_edges():
    edges = [-1.0, 0.0, 1.0, 3.0]
    correct, wrong = [6, 3, 1], [0, 1, 3]
    fig = filter_figures.distribution_figure(edges, correct, wrong, means=(0.1, 1.7))
    ok, bad = fig.data
    np.testing.assert_allclose(ok.x, [-0.5, 0.5, 2.0])
    np.testing.assert_allclose(ok.width, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(ok.y, [60.0, 30.0, 10.0])
    assert np.isnan(bad.y[0]) and bad.y[1] == pytest.approx(25.0) and bad.y[2] == pytest.approx(75.0)
    assert [row[2] for row in bad.customdata] == wrong  # hover shows the counts themselves
    assert ok.name == "correct (10)" and bad.name == "misclassified (4)"
    assert fig.layout.yaxis.type == "log" and fig.layout.barmode == "overlay"
    assert sorted(s.x0 for s in fig.layout.shapes) == [0.1, 1.7]  # the two means as lines


def test_distribution_without_mistakes_draws_one_group():
    fig = filter_figures.distribution_figure([0.0, 1.0, 2.0], [5, 5], [0, 0], means=(1.0, None))
    assert [t.name for t in fig.data] == ["correct (10)"] and len(fig.layout.shapes) == 1
    assert not filter_figures.distribution_figure([0.0], [], []).data


def test_classes_keep_the_backend_order_with_names():
    classes = [{"class": 2, "mean_z": 1.5}, {"class": 0, "mean_z": 0.2}, {"class": 1, "mean_z": -0.4}]
    bar = filter_figures.classes_figure(classes, NAMES).data[0]
    assert list(bar.y) == ["bird", "cat", "dog"] and list(bar.x) == [1.5, 0.2, -0.4]
    assert list(bar.marker.color) == [ACCENT, ACCENT, MUTED] and list(bar.customdata) == [2, 0, 1]
    assert list(filter_figures.classes_figure([{"class": 7, "mean_z": 1.0}], NAMES).data[0].y) == ["7"]
    assert "no class" in annotation_text(filter_figures.classes_figure([], NAMES))


def test_confusions_show_counts_and_fade_rare_pairs():
    confusions = [{"true": 0, "pred": 1, "count": 1, "mean_z": 5.0}, {"true": 2, "pred": 0, "count": 30, "mean_z": 3.0},
                  {"true": 1, "pred": 2, "count": 4, "mean_z": 1.0}]
    bar = filter_figures.confusions_figure(confusions, NAMES, shown=2).data[0]
    assert list(bar.y) == ["cat → dog (1)", "bird → cat (30)"] and list(bar.x) == [5.0, 3.0]
    assert [list(c) for c in bar.customdata] == [[0, 1], [2, 0]]
    assert bar.marker.opacity[0] < bar.marker.opacity[1] == pytest.approx(1.0)
    assert "no mistakes" in annotation_text(filter_figures.confusions_figure([], NAMES))
