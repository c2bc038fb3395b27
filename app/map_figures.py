"""Figures of the map of the mistakes, as pure functions of the map's arrays (no HTTP, no Dash state).

A map is drawn as WebGL scatter traces (``go.Scattergl``), one per colour group, holding numpy arrays (Plotly
sends them to the browser as binary), so 50,000 points cost well under a megabyte and stay smooth to pan,
hover and lasso. Each point's customdata is its sample id only (binary too: Dash's event data cannot index it,
so the page's browser code reads a point's id from the drawn trace); the page looks everything else up by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from app.components import class_name
from app.figures import FONT, INK, MUTED

COLOURINGS = ("pair", "mode")  # by confusion pair (true -> predicted) or by failure mode
MAX_GROUPS = 20  # the most frequent groups get a colour each; the rest share one grey trace
OTHER = "#c3c9d0"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
           "#a55194", "#8c6d31")
HOVER = "#%{customdata}<br>%{fullData.name}<extra></extra>"


@dataclass(frozen=True)
class MapPoints:
    """The mistakes of one space, one array per field (the ``/api/map?format=columns`` answer)."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    label: np.ndarray
    pred: np.ndarray

    @classmethod
    def from_answer(cls, answer: dict) -> "MapPoints":
        return cls(np.asarray(answer["ids"], dtype=np.int64), np.asarray(answer["x"], dtype=np.float32),
                   np.asarray(answer["y"], dtype=np.float32), np.asarray(answer["cluster"], dtype=np.int64),
                   np.asarray(answer["label"], dtype=np.int64), np.asarray(answer["pred"], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.ids.size)


@dataclass(frozen=True)
class Group:
    name: str
    colour: str
    rows: np.ndarray  # positions in the MapPoints arrays, ascending


def groups(points: MapPoints, colouring: str, names: Sequence[str]) -> list[Group]:
    """The traces of a map: "other" when there are more than ``MAX_GROUPS`` groups, then the largest groups
    (ties: smaller key).

    Pairs are keyed by (true, predicted) class; modes by their number. The order depends only on the arrays,
    so both maps of one page (and every redraw) split the points the same way."""
    if colouring not in COLOURINGS:
        raise ValueError(f"colouring must be one of {', '.join(COLOURINGS)}, got {colouring!r}")
    keys = (np.stack([points.label, points.pred], axis=1) if colouring == "pair" else points.cluster[:, None])
    found, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.lexsort((*[found[:, i] for i in reversed(range(found.shape[1]))], -counts))
    shown = order[:MAX_GROUPS]
    rank = np.full(found.shape[0], len(shown), dtype=np.int64)
    rank[shown] = np.arange(len(shown))
    row_rank = rank[inverse]
    by_rank = np.argsort(row_rank, kind="stable")
    bounds = np.searchsorted(row_rank[by_rank], np.arange(len(shown) + 2))
    out = []
    for i, g in enumerate(shown.tolist()):
        key = found[g]
        name = (f"{class_name(names, key[0])} → {class_name(names, key[1])}" if colouring == "pair"
                else f"mode {int(key[0])}")
        out.append(Group(name, PALETTE[i % len(PALETTE)], by_rank[bounds[i]:bounds[i + 1]]))
    rest = by_rank[bounds[len(shown)]:]
    if rest.size:  # first, so its grey points are drawn beneath the coloured ones
        out.insert(0, Group(f"other {'pairs' if colouring == 'pair' else 'modes'} ({found.shape[0] - len(shown)})",
                            OTHER, rest))
    return out


def marker_size(count: int) -> float:
    """Smaller dots as the map fills up, so dense regions stay readable."""
    return 7.0 if count <= 2_000 else 5.0 if count <= 20_000 else 3.5


def selected_points(points: MapPoints, traces: Sequence[Group], selected: Sequence[int] | np.ndarray | None) -> list:
    """Per trace, the positions of the ``selected`` sample ids within it (Plotly's ``selectedpoints``); None
    per trace when nothing is selected."""
    if selected is None:
        return [None] * len(traces)
    chosen = np.isin(points.ids, np.asarray(selected, dtype=np.int64))
    return [np.flatnonzero(chosen[group.rows]) for group in traces]


def map_figure(points: MapPoints, colouring: str, names: Sequence[str], *, title: str,
               selected: Sequence[int] | np.ndarray | None = None, height: int = 460) -> go.Figure:
    """One space's map: a WebGL trace per colour group (``groups``, in that order), the
    ``selected`` ids highlighted and the rest dimmed. Lasso is the drag mode; the axes carry no units."""
    fig = go.Figure()
    if not len(points):
        fig.add_annotation(text="No mistakes to map.", showarrow=False, font=dict(size=13, color=MUTED),
                           x=0.5, y=0.5, xref="paper", yref="paper")
    traces = groups(points, colouring, names) if len(points) else []
    size = marker_size(len(points))
    for group, chosen in zip(traces, selected_points(points, traces, selected)):
        fig.add_trace(go.Scattergl(
            x=points.x[group.rows], y=points.y[group.rows], customdata=points.ids[group.rows], name=group.name,
            mode="markers", marker=dict(color=group.colour, size=size, opacity=0.85, line=dict(width=0)),
            selectedpoints=chosen, selected=dict(marker=dict(opacity=1.0)),
            unselected=dict(marker=dict(opacity=0.08)), hovertemplate=HOVER,
        ))
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, title=None)
    fig.update_layout(
        template="none", height=height, margin=dict(l=10, r=10, t=36, b=10), font=dict(family=FONT, size=12, color=INK),
        title=dict(text=title, x=0.01, font=dict(size=13)), plot_bgcolor="white", paper_bgcolor="white",
        dragmode="lasso", hovermode="closest", clickmode="event", uirevision="map",
        legend=dict(itemsizing="constant", font=dict(size=11), bgcolor="rgba(255,255,255,0.8)"),
        xaxis=axis, yaxis={**axis, "scaleanchor": "x"},
    )
    return fig
