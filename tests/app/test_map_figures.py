"""The map figures draw exactly the mistakes they are given, grouped and highlighted as asked, as WebGL traces."""

import numpy as np
import plotly.graph_objects as go
import pytest

from app import map_figures as mf

NAMES = ["cat", "dog", "bird", "fish"]


def points(n: int, classes: int = 4, modes: int = 3, seed: int = 0) -> mf.MapPoints:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    pred = (label + rng.integers(1, classes, n)) % classes
    return mf.MapPoints(np.sort(rng.choice(10 * n, n, replace=False)), rng.standard_normal(n).astype(np.float32),
                        rng.standard_normal(n).astype(np.float32), rng.integers(0, modes, n), label, pred)


def test_groups_partition_the_points_largest_first():
    p = points(500)
    for colouring in mf.COLOURINGS:
        traces = mf.groups(p, colouring, NAMES)
        rows = np.concatenate([g.rows for g in traces])
        assert np.array_equal(np.sort(rows), np.arange(len(p)))  # every point exactly once
        sizes = [g.rows.size for g in traces]
        assert sizes == sorted(sizes, reverse=True)
    pairs = mf.groups(p, "pair", NAMES)
    for g in pairs:
        true, pred = g.name.split(" → ")
        assert {(NAMES[t], NAMES[q]) for t, q in zip(p.label[g.rows], p.pred[g.rows])} == {(true, pred)}
    modes = mf.groups(p, "mode", NAMES)
    for g in modes:
        assert set(p.cluster[g.rows].tolist()) == {int(g.name.removeprefix("mode "))}


def test_groups_beyond_the_palette_share_one_grey_trace_drawn_first():
    n = 3000
    p = points(n, classes=10)  # 90 possible pairs
    traces = mf.groups(p, "pair", [str(i) for i in range(10)])
    assert len(traces) == mf.MAX_GROUPS + 1
    other = traces[0]
    assert other.colour == mf.OTHER and other.name.startswith("other pairs (")
    pairs = {(int(t), int(q)) for t, q in zip(p.label, p.pred)}
    assert other.name == f"other pairs ({len(pairs) - mf.MAX_GROUPS})"
    shown = traces[1:]
    smallest_shown = min(g.rows.size for g in shown)
    counts = {}
    for t, q in zip(p.label[other.rows].tolist(), p.pred[other.rows].tolist()):
        counts[(t, q)] = counts.get((t, q), 0) + 1
    assert max(counts.values()) <= smallest_shown
    assert len({g.colour for g in shown}) == mf.MAX_GROUPS
    with pytest.raises(ValueError, match="colouring must be one of"):
        mf.groups(p, "class", NAMES)


def test_map_figure_draws_each_point_once_with_its_id():
    p = points(400)
    fig = mf.map_figure(p, "mode", NAMES, title="t")
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    ids = np.concatenate([np.asarray(t.customdata) for t in fig.data])
    xs = np.concatenate([np.asarray(t.x) for t in fig.data])
    order = np.argsort(ids)
    assert np.array_equal(ids[order], p.ids)
    assert np.array_equal(xs[order], p.x)
    assert all(t.selectedpoints is None for t in fig.data) and fig.layout.dragmode == "lasso"


def test_selection_highlights_exactly_the_selected_ids():
    p = points(400)
    chosen = p.ids[::7]
    fig = mf.map_figure(p, "pair", NAMES, title="t", selected=np.append(chosen, 10 ** 9))  # unknown id: ignored
    highlighted = np.concatenate([np.asarray(t.customdata)[list(t.selectedpoints)] for t in fig.data])
    assert np.array_equal(np.sort(highlighted), chosen)
    nothing = mf.map_figure(p, "pair", NAMES, title="t", selected=[])
    assert all(len(t.selectedpoints) == 0 for t in nothing.data)


def test_empty_map_says_so():
    fig = mf.map_figure(mf.MapPoints.from_answer({k: [] for k in ("ids", "x", "y", "cluster", "label", "pred")}),
                        "pair", NAMES, title="t")
    assert not fig.data and "No mistakes" in fig.layout.annotations[0].text


def test_fifty_thousand_points_build_as_webgl():
    p = points(50_000, classes=10, modes=20)
    fig = mf.map_figure(p, "pair", [str(i) for i in range(10)], title="t", selected=p.ids[:5000])
    assert all(t.type == "scattergl" for t in fig.data)
    assert sum(len(t.x) for t in fig.data) == 50_000
    assert sum(len(t.selectedpoints) for t in fig.data) == 5000
    assert fig.data[0].marker.size == mf.marker_size(50_000) < mf.marker_size(1_000)
