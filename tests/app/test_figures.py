"""Figures are pure functions of arrays: check the data they draw, not pixels."""

import numpy as np
import pytest

from app import figures

LAYERS = [("conv1.weight", 0, 3), ("layer1.conv.weight", 3, 7)]


def test_parse_layers_accepts_both_shapes():
    assert figures.parse_layers([{"index": 0, "name": "a", "start": 0, "stop": 2}]) == [("a", 0, 2)]
    assert figures.parse_layers([["b", 2, 5]]) == [("b", 2, 5)]
    assert figures.short_layer("layer3.1.conv2.weight") == "layer3.1.conv2"


def test_confusion_figure_cells_and_clicks():
    m = np.array([[5, 2], [1, 7]])
    fig = figures.confusion_figure(m, ["cat", "dog"])
    diag, off = fig.data
    assert np.isnan(off.z[0][0]) and off.z[0][1] == 2 and off.z[1][0] == 1
    assert diag.z[1][1] == 7 and np.isnan(diag.z[0][1])
    assert list(off.x) == ["cat", "dog"] and list(off.y) == ["cat", "dog"]  # rows: true class, columns: predicted
    with pytest.raises(ValueError):
        figures.confusion_figure(m, ["cat"])


def test_sort_within_layers_keeps_layers_in_place():
    values = np.array([1.0, 3.0, 2.0, 0.0, 5.0, -1.0, 4.0])
    out = figures.sort_within_layers(values, LAYERS)
    assert out.tolist() == [3.0, 2.0, 1.0, 5.0, 4.0, 0.0, -1.0]


def test_average_profiles_figure_sorts_each_curve():
    correct = np.array([0.0, 1.0, -1.0, 0.5, 0.2, 0.1, 0.3])
    wrong = -correct
    fig = figures.average_profiles_figure(correct, wrong, LAYERS)
    assert [t.name for t in fig.data] == ["correct", "correct", "misclassified", "misclassified"]
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    assert [t.meta[0] for t in fig.data] == ["conv1", "layer1.conv"] * 2  # the hover names the layer
    joined = lambda a, b: list(a.y) + list(b.y)  # noqa: E731
    assert joined(*fig.data[:2]) == figures.sort_within_layers(correct, LAYERS).tolist()
    assert joined(*fig.data[2:]) == figures.sort_within_layers(wrong, LAYERS).tolist()
    assert list(fig.layout.xaxis.ticktext) == ["conv1", "layer1.conv"]


def test_raw_gradient_figure_log_axis():
    fig = figures.raw_gradient_figure(np.array([1e-5, 1e-3, 2e-3, 1e-4, 1e-4, 1e-4, 1e-4]), LAYERS)
    assert fig.layout.yaxis.type == "log"
    assert len(fig.data[0].y) == 7


def test_top_filters_figure_marks_selected():
    filters = [{"filter": 4, "layer": "layer1.conv.weight", "channel": 1, "z": 5.0},
               {"filter": 0, "layer": "conv1.weight", "channel": 0, "z": 3.0}]
    fig = figures.top_filters_figure(filters, selected=[0])
    bar = fig.data[0]
    assert list(bar.y) == ["layer1.conv #1", "conv1 #0"]
    assert list(bar.customdata) == [4, 0]
    assert bar.marker.color[0] == figures.ACCENT and bar.marker.color[1] == figures.WRONG


def test_profile_figure_marks_top_filters():
    z = np.arange(7, dtype=float)
    fig = figures.profile_figure(z, LAYERS, marked=[6, 2, 99])
    *per_layer, marks = fig.data
    assert list(marks.x) == [6, 2] and list(marks.y) == [6.0, 2.0]
    assert list(marks.text) == ["layer1.conv #3", "conv1 #2"]  # one name for a filter everywhere
    # a trace per layer: the hover's point number within it is the channel
    assert [t.meta[0] for t in per_layer] == ["conv1", "layer1.conv"]
    assert [list(t.x) for t in per_layer] == [[0, 1, 2], [3, 4, 5, 6]]


def test_negative_z_is_not_drawn_as_salient():
    filters = [{"filter": 1, "layer": "a", "channel": 0, "z": -0.2}, {"filter": 2, "layer": "a", "channel": 1, "z": -0.3}]
    fig = figures.top_filters_figure(filters)
    assert set(fig.data[0].marker.color) == {figures.MUTED}
    assert "no filter is more salient than usual" in fig.layout.annotations[0].text
    mixed = figures.top_filters_figure([{**filters[0], "z": 2.0}, filters[1]], chosen=2)
    assert list(mixed.data[0].marker.color) == [figures.ACCENT, figures.MUTED] and not mixed.layout.annotations
    assert list(mixed.data[0].marker.line.width) == [0, 3]


def test_common_prefix_is_dropped_at_dots_only():
    names = ["layer4.0.conv1 #3", "layer4.0.conv2 #7", "layer4.0.shortcut.0 #1"]
    assert figures.drop_common_prefix(names) == ["…conv1 #3", "…conv2 #7", "…shortcut.0 #1"]
    assert figures.drop_common_prefix(["conv1 #0", "layer1.conv #2"]) == ["conv1 #0", "layer1.conv #2"]
    assert figures.drop_common_prefix(["a.b #1"]) == ["a.b #1"]


def test_probability_figure_keeps_true_class():
    names = [f"c{i}" for i in range(8)]
    before = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.04, 0.02, 0.01])
    after = np.roll(before, 1)
    fig = figures.probability_figure(names, before, after, true_label=7, top=3)
    assert len(fig.data) == 2
    assert fig.data[0].y[-1] == "✔ c7"
    assert fig.data[1].x[0] == pytest.approx(after[0])
    only = figures.probability_figure(names, before)
    assert len(only.data) == 1 and list(only.data[0].y[:2]) == ["c0", "c1"]


def test_top_filters_axis_leaves_room_for_values():
    filters = [{"filter": 1, "layer": "a", "channel": 0, "z": -2.0}, {"filter": 2, "layer": "a", "channel": 1, "z": -1.0}]
    low, high = figures.top_filters_figure(filters).layout.xaxis.range
    assert low < -2.0 and high == 0.0


def test_raw_gradient_figure_draws_large_nets_as_a_line():
    layers = [("a", 0, 3000), ("b", 3000, 6000)]
    assert figures.raw_gradient_figure(np.ones(6000), layers).data[0].mode == "lines"
    assert figures.raw_gradient_figure(np.ones(7), LAYERS).data[0].mode == "markers"


def test_layer_labels_do_not_crowd():
    layers = [("conv1", 0, 16)] + [(f"l{i}", 16 + 16 * i, 32 + 16 * i) for i in range(4)] + \
        [(f"m{i}", 80 + 300 * i, 380 + 300 * i) for i in range(3)]
    ticks = figures.profile_figure(np.zeros(980), layers).layout.xaxis.tickvals
    assert min(np.diff(ticks)) >= 980 / 14
