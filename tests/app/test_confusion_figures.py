"""The confusion page's figures are pure functions of arrays: check the data they draw."""

import numpy as np

from app import confusion_figures, figures

LAYERS = [("conv1.weight", 0, 3), ("layer1.conv.weight", 3, 7)]


def test_fingerprint_draws_the_pair_its_top_filters_and_the_baseline():
    profile = np.array([0.1, 2.0, -0.3, 0.4, 3.5, 0.0, 1.2])
    baseline = np.array([0.0, 0.2, 0.1, -0.1, 0.3, 0.0, 0.2])
    fig = confusion_figures.fingerprint_figure(profile, baseline, LAYERS, [4, 1], "cat", "dog")
    pair, marks, correct = fig.data
    assert pair.name == "mistakes: cat predicted as dog" and correct.name == "correct cat (baseline)"
    np.testing.assert_array_equal(pair.y, profile)
    np.testing.assert_array_equal(correct.y, baseline)
    assert list(marks.x) == [4, 1] and list(marks.customdata) == [4, 1]  # a click opens the filter
    np.testing.assert_array_equal(marks.y, profile[[4, 1]])
    assert marks.text[0] == "layer1.conv #1" and fig.layout.showlegend


def test_fingerprint_without_baseline_or_profile():
    fig = confusion_figures.fingerprint_figure([1.0] * 7, None, LAYERS, [0], "cat", "dog")
    assert [t.name for t in fig.data] == ["mistakes: cat predicted as dog", "top filters"]
    empty = confusion_figures.fingerprint_figure([], None, LAYERS, [], "cat", "dog")
    assert not empty.data and "no fingerprint" in empty.layout.annotations[0].text


def test_long_fingerprints_keep_their_peaks():
    layers = [("a.weight", 0, 6000), ("b.weight", 6000, 12000)]
    profile = np.random.default_rng(0).normal(size=12000)
    profile[7777] = 40.0
    fig = confusion_figures.fingerprint_figure(profile, -profile, layers, [7777], "cat", "dog")
    assert len(fig.data[0].y) <= figures.MAX_POINTS + 4 and max(fig.data[0].y) == 40.0
    assert min(fig.data[2].y) == -40.0


def test_filter_rows_compare_with_the_true_class():
    top = [{"filter": 4, "layer": "layer1.conv.weight", "channel": 1, "mean_z": 3.5}]
    baseline = np.array([0.0, 0.2, 0.1, -0.1, 0.25, 0.0, 0.2])
    (row,) = confusion_figures.filter_rows(top, baseline)
    assert row["name"] == "layer1.conv #1" and row["correct_z"] == 0.25 and row["excess"] == 3.25
    (plain,) = confusion_figures.filter_rows(top, None)
    assert plain["correct_z"] is None and plain["excess"] is None and plain["mean_z"] == 3.5
