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
    fig = figures.average_profiles_figure(correct, wrong, LAYERS, by_layer=False)
    assert [t.name for t in fig.data] == ["correct", "misclassified"]
    assert list(fig.data[0].y) == figures.sort_within_layers(correct, LAYERS).tolist()
    assert list(fig.data[1].y) == figures.sort_within_layers(wrong, LAYERS).tolist()
    # sorted within each layer, so a point is a rank in its layer, and the hover says so (not a channel)
    assert list(fig.data[0].text)[2:4] == ["conv1, rank 3 in the layer", "layer1.conv, rank 1 in the layer"]
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
    line, marks = fig.data
    assert list(marks.x) == [6, 2] and list(marks.y) == [6.0, 2.0]
    assert list(marks.text) == ["layer1.conv #3", "conv1 #2"]  # one name for a filter everywhere
    assert list(line.x) == list(range(7)) and list(line.text)[2:4] == ["conv1 #2", "layer1.conv #0"]


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


def _vit_like_layers():
    """torchvision vit_b_16's weights with --params conv+linear: 12 blocks of long names, ~85k filters."""
    names = [("conv_proj.weight", 768)]
    for block in range(12):
        prefix = f"encoder.layers.encoder_layer_{block}"
        names += [(f"{prefix}.self_attention.in_proj_weight", 2304), (f"{prefix}.self_attention.out_proj.weight", 768),
                  (f"{prefix}.mlp.0.weight", 3072), (f"{prefix}.mlp.3.weight", 768)]
    names.append(("heads.head.weight", 1000))
    layers, start = [], 0
    for name, count in names:
        layers.append((name, start, start + count))
        start += count
    return layers


def test_long_profiles_are_drawn_as_an_envelope_that_keeps_every_layers_extremes():
    layers = _vit_like_layers()
    total = layers[-1][2]
    z = np.random.default_rng(0).normal(size=total)
    z[12345] = 40.0  # a lone spike must survive
    fig = figures.profile_figure(z, layers, marked=[12345])
    line = fig.data[0]
    assert total > 80_000 and len(line.x) <= figures.MAX_POINTS + 2 * len(layers)
    assert np.array_equal(np.asarray(line.y), z[np.asarray(line.x)])  # real filters, real values
    assert 12345 in set(line.x)
    for _, start, stop in layers:
        shown = [x for x in line.x if start <= x < stop]
        assert z[shown].max() == z[start:stop].max() and z[shown].min() == z[start:stop].min()
    # 12345 = 768 (conv_proj) + 6912 (block 0) + 2304 + 768 (block 1 attention) + 1593
    assert line.text[list(line.x).index(12345)] == "encoder.layers.encoder_layer_1.mlp.0 #1593"
    assert fig.data[1].text[0].endswith("mlp.0 #1593")


def test_long_layer_names_get_short_distinct_axis_labels():
    layers = _vit_like_layers()
    labels = figures.layer_labels([name for name, _, _ in layers])
    assert all(len(label) <= figures.MAX_LABEL for label in labels)
    assert labels[0] == "conv_proj" and labels[-1] == "heads.head"
    assert labels[1] == "encoder_layer_0.….in_proj"  # 'encoder' and 'layers' tell no layer apart
    assert labels[3] == "encoder_layer_0.mlp.0"
    assert len(set(labels)) == len(labels)
    ticks = figures.average_profiles_figure(np.zeros(layers[-1][2]), np.zeros(layers[-1][2]), layers).layout.xaxis
    assert all(len(text) <= figures.MAX_LABEL for text in ticks.ticktext)
    assert len(figures.raw_gradient_figure(np.ones(layers[-1][2]), layers).data[0].x) <= figures.MAX_POINTS + 100


def test_fit_label_keeps_the_ends():
    assert figures.fit_label("short.name") == "short.name"
    assert figures.fit_label("a" * 40) == "a" * 13 + "…" + "a" * 14
    assert figures.fit_label("stages.3.blocks.11.attn.qkv", 20) == "stages.3.….11.….qkv"
    assert figures.short_layer("attn.in_proj_weight") == "attn.in_proj"


def test_top_filters_with_long_layer_names_have_short_labels_and_full_hover():
    long = "encoder.layers.encoder_layer_11.self_attention.in_proj_weight"
    filters = [{"filter": 80000 + i, "layer": long, "channel": i, "z": 9.0 - i} for i in range(3)]
    bar = figures.top_filters_figure(filters).data[0]
    assert all(len(label) <= figures.MAX_LABEL for label in bar.y) and len(set(bar.y)) == 3
    assert list(bar.hovertext) == [f"encoder.layers.encoder_layer_11.self_attention.in_proj #{i}" for i in range(3)]


def test_layers_get_equal_width():
    layers = [("conv1.weight", 0, 2), ("layer1.conv.weight", 2, 10)]
    x = figures.layer_depth_x(layers, 10)
    assert x[:2].tolist() == [0.25, 0.75]  # two filters share the first unit
    assert np.allclose(x[2:], 1 + (np.arange(8) + 0.5) / 8)  # eight share the second
    fig = figures.raw_gradient_figure(np.linspace(1e-4, 1e-3, 10), layers)
    assert np.allclose(fig.data[0].x, x) and list(fig.data[0].text) == figures.filter_hover_names(layers, np.arange(10))
    boundaries = sorted(shape.x0 for shape in fig.layout.shapes if shape.type == "line")
    assert boundaries == [0, 1, 2] and list(fig.layout.xaxis.range) == [0, 2]
    per_filter = figures.raw_gradient_figure(np.linspace(1e-4, 1e-3, 10), layers, by_layer=False)
    assert list(per_filter.data[0].x) == list(range(10))
    profiles = figures.average_profiles_figure(np.arange(10.0), -np.arange(10.0), layers)
    assert np.allclose(profiles.data[0].x, x)
