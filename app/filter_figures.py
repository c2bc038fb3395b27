"""Figures of the filter page (``/filter/<index>``), as pure functions of the backend's arrays: where a filter
sits in the model, its saliency distribution over correct and misclassified samples, and the classes and
confusions it drives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.components import class_name
from app.figures import ACCENT, CORRECT, MUTED, WRONG, Layers, _base_layout, empty_figure, layer_labels, text_px


def layer_of(layers: Layers, filter_id: int) -> int | None:
    """The position of the layer holding ``filter_id`` (None: no layer holds it)."""
    return next((i for i, (_, start, stop) in enumerate(layers) if start <= filter_id < stop), None)


def position_figure(layers: Layers, filter_id: int) -> go.Figure:
    """The model's layers shallow to deep as bars of their filter count; the filter's layer highlighted and
    the filter itself marked at its channel's height."""
    where = layer_of(layers, filter_id)
    if where is None:
        return empty_figure(f"no layer holds filter {filter_id}", 200)
    sizes = [stop - start for _, start, stop in layers]
    names = [name for name, _, _ in layers]
    fig = go.Figure(go.Bar(
        x=list(range(len(layers))), y=sizes, hovertext=names,
        marker_color=[ACCENT if i == where else "#d9dee5" for i in range(len(layers))],
        hovertemplate="layer %{x}: %{hovertext}<br>%{y} filters<extra></extra>"))
    channel = filter_id - layers[where][1]
    fig.add_trace(go.Scatter(x=[where], y=[channel + 0.5], mode="markers", marker=dict(color=WRONG, size=10,
                             symbol="diamond", line=dict(color="white", width=1)),
                             hovertemplate=f"this filter: channel {channel} of {sizes[where]}<extra></extra>"))
    every = max(1, -(-len(layers) // 14))
    shown = sorted(set(range(0, len(layers), every)) | {where})
    labels = layer_labels(names)
    ticktext = [labels[i] for i in shown]
    fig.update_xaxes(tickvals=shown, ticktext=ticktext, tickangle=-35, showgrid=False,
                     title=dict(text="layers, shallow → deep", standoff=6))
    fig.update_yaxes(title="filters in the layer", gridcolor="#f0f2f5", rangemode="tozero")
    return _base_layout(fig, 190 + text_px(ticktext, 35), showlegend=False, bargap=0.15,
                        margin=dict(l=60, r=10, t=10, b=text_px(ticktext, 35) + 34))


def distribution_figure(edges: Sequence[float], correct: Sequence[int], misclassified: Sequence[int],
                        means: tuple[float | None, float | None] = (None, None)) -> go.Figure:
    """The filter's z over the correct and the misclassified samples, each as a share of its own group (the
    mistakes are few), on a log axis so the tail where a filter is salient stays visible; dashed lines: means."""
    edges = np.asarray(edges, dtype=float)
    if edges.size < 2:
        return empty_figure("no distribution")
    centres, widths = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
    fig = go.Figure()
    for name, counts, colour, mean in (("correct", correct, CORRECT, means[0]),
                                       ("misclassified", misclassified, WRONG, means[1])):
        counts = np.asarray(counts, dtype=float)
        total = counts.sum()
        if total == 0:
            continue
        share = np.where(counts > 0, 100 * counts / total, np.nan)  # empty bins drawn as nothing on a log axis
        fig.add_trace(go.Bar(x=centres, y=share, width=widths, name=f"{name} ({int(total):,})", marker_color=colour,
                             opacity=0.55, customdata=np.stack([edges[:-1], edges[1:], counts], axis=1),
                             hovertemplate=f"{name}<br>z in [%{{customdata[0]:.2f}}, %{{customdata[1]:.2f}}]"
                                           "<br>%{customdata[2]:.0f} samples (%{y:.2g}%)<extra></extra>"))
        if mean is not None:
            fig.add_vline(x=mean, line=dict(color=colour, dash="dash", width=2))
    if not fig.data:
        return empty_figure("no samples")
    fig.update_xaxes(title=dict(text="standardized saliency of this filter (z)", standoff=6), gridcolor="#f0f2f5")
    fig.update_yaxes(title="share of the group (%)", type="log", gridcolor="#f0f2f5")
    return _base_layout(fig, 300, barmode="overlay", bargap=0,
                        legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
                        margin=dict(l=64, r=16, t=36, b=50))


def classes_figure(classes: Sequence[dict], names: Sequence[str]) -> go.Figure:
    """Mean z of the filter over each class's correct samples, in the backend's order (largest first)."""
    if not classes:
        return empty_figure("no class has a correct sample")
    labels = [class_name(names, c["class"]) for c in classes]
    z = [float(c["mean_z"]) for c in classes]
    fig = go.Figure(go.Bar(x=z, y=labels, orientation="h", marker_color=[ACCENT if v > 0 else MUTED for v in z],
                           customdata=[int(c["class"]) for c in classes],
                           hovertemplate="%{y}<br>mean z %{x:.2f} over its correct samples<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, type="category")
    fig.update_xaxes(title=dict(text="mean z, correct samples of the class", standoff=6), gridcolor="#f0f2f5",
                     zerolinecolor="#cbd2d9")
    return _base_layout(fig, 70 + 22 * len(labels), bargap=0.25, margin=dict(l=text_px(labels), r=16, t=10, b=46))


def confusion_label(names: Sequence[str], item: dict) -> str:
    """``Coat → Pullover (27)``: a confusion pair and how many mistakes it has."""
    return f"{class_name(names, item['true'])} → {class_name(names, item['pred'])} ({int(item['count'])})"


def confusions_figure(confusions: Sequence[dict], names: Sequence[str], shown: int = 15) -> go.Figure:
    """The ``shown`` confusion pairs with the largest mean z of the filter over their mistakes (backend order);
    a bar's opacity grows with the pair's mistake count, since a mean over one or two mistakes says little."""
    top = list(confusions)[:shown]
    if not top:
        return empty_figure("the model makes no mistakes")
    labels = [confusion_label(names, c) for c in top]
    counts = np.array([int(c["count"]) for c in top], dtype=float)
    opacity = 0.35 + 0.65 * np.log1p(counts) / np.log1p(counts.max())
    fig = go.Figure(go.Bar(x=[float(c["mean_z"]) for c in top], y=labels, orientation="h",
                           marker=dict(color=WRONG, opacity=opacity.round(2).tolist()),
                           customdata=[[int(c["true"]), int(c["pred"])] for c in top],
                           hovertemplate="%{y} mistakes<br>mean z %{x:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, type="category")
    fig.update_xaxes(title=dict(text="mean z over the pair's mistakes", standoff=6), gridcolor="#f0f2f5",
                     zerolinecolor="#cbd2d9")
    return _base_layout(fig, 70 + 22 * len(labels), bargap=0.25, margin=dict(l=text_px(labels), r=16, t=10, b=46))
