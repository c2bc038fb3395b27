"""Plotly figures as pure functions of arrays (no HTTP, no Dash state), so they are unit-testable.

Profiles are drawn with layers left to right (shallow to deep) on alternating shaded bands, the way the
paper draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

CORRECT = "#2f7d4f"
WRONG = "#c2410c"
ACCENT = "#3b5bdb"
MUTED = "#9aa5b1"
INK = "#1f2933"
FONT = "Inter, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"

Layers = Sequence[tuple[str, int, int]]


def parse_layers(raw) -> list[tuple[str, int, int]]:
    """``/api/info``'s layers (``[{name,start,stop}]`` or ``[[name,start,stop]]``) as ``[(name, start, stop)]``."""
    out = []
    for item in raw or []:
        if isinstance(item, dict):
            out.append((str(item["name"]), int(item["start"]), int(item["stop"])))
        else:
            name, start, stop = item[:3]
            out.append((str(name), int(start), int(stop)))
    return out


def short_layer(name: str) -> str:
    """``layer3.1.conv2.weight`` -> ``layer3.1.conv2`` (the ``.weight`` suffix carries no information)."""
    return name[: -len(".weight")] if name.endswith(".weight") else name


def drop_common_prefix(names: Sequence[str]) -> list[str]:
    """Names without the dotted prefix they all share (``layer4.0.conv1 #3``, ``layer4.0.conv2 #7`` ->
    ``…conv1 #3``, ``…conv2 #7``), so a narrow column shows what tells them apart."""
    if len(names) < 2:
        return list(names)
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    cut = prefix.rfind(".") + 1  # only whole dotted parts
    return [f"…{n[cut:]}" if cut else n for n in names]


MAX_MARKERS = 5000
CHAR_PX = 7.0  # average width of a 12 px label character, for sizing margins up front


def text_px(labels, angle: float = 0.0) -> int:
    """Room the longest label needs across (angle 0) or down (tilted by ``angle`` degrees) the axis."""
    longest = max((len(str(label)) for label in labels), default=0) * CHAR_PX
    return int(longest * abs(np.sin(np.radians(angle)))) + 14 if angle else int(longest) + 12


def _base_layout(fig: go.Figure, height: int, margin: dict | None = None, **kwargs) -> go.Figure:
    """Shared look. Margins are computed here instead of Plotly's automargin, which costs a second layout
    pass in the browser on every update; the bare template keeps each figure's JSON small."""
    fig.update_layout(
        template="none",
        height=height,
        margin=margin or dict(l=60, r=10, t=36, b=70),
        font=dict(family=FONT, size=12, color="#1f2933"),
        plot_bgcolor="white",
        paper_bgcolor="white",
        hoverlabel=dict(font_family=FONT),
        **kwargs,
    )
    return fig


def empty_figure(message: str, height: int = 260) -> go.Figure:
    """A blank figure that says why there is nothing to show."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=13, color=MUTED), x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base_layout(fig, height, margin=dict(l=10, r=10, t=10, b=10))


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Counts with true classes as rows and predictions as columns. Mistakes are coloured, the diagonal is
    grey so the eye goes to the errors."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = matrix.shape[0]
    if matrix.shape != (n, n) or len(class_names) != n:
        raise ValueError(f"confusion matrix {matrix.shape} does not match {len(class_names)} class names")
    idx = np.arange(n)
    off = matrix.astype(float)
    off[idx, idx] = np.nan
    diag = np.full((n, n), np.nan)
    diag[idx, idx] = matrix[idx, idx]
    hover = "true %{y}<br>predicted %{x}<br>%{text} samples<extra></extra>"
    text = matrix.astype(str)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=diag, x=list(class_names), y=list(class_names), text=text,
                             texttemplate="%{text}", colorscale=[[0, "#e4e7eb"], [1, "#e4e7eb"]],
                             showscale=False, hovertemplate=hover, xgap=2, ygap=2))
    fig.add_trace(go.Heatmap(z=off, x=list(class_names), y=list(class_names), text=text,
                             texttemplate="%{text}", colorscale="OrRd", showscale=False,
                             zmin=0, zmax=max(1.0, np.nanmax(off) if n > 1 else 1.0),
                             hovertemplate=hover, xgap=2, ygap=2))
    fig.update_xaxes(title=dict(text="predicted class", standoff=8), side="bottom", tickangle=-35, showgrid=False,
                     zeroline=False)
    fig.update_yaxes(title=dict(text="true class", standoff=8), autorange="reversed", showgrid=False, zeroline=False)
    bottom = text_px(class_names, 35) + 36
    return _base_layout(fig, 20 + bottom + 38 * n, margin=dict(l=text_px(class_names) + 30, r=10, t=10, b=bottom))


def _layer_bands(fig: go.Figure, layers: Layers, max_ticks: int = 14) -> None:
    """Shade every other layer and label a readable subset of them on the x axis."""
    for i, (_, start, stop) in enumerate(layers):
        if i % 2 == 0:
            fig.add_vrect(x0=start - 0.5, x1=stop - 0.5, fillcolor="#eef1f5", line_width=0, layer="below")
    # label a layer only if its centre is far enough from the last labelled one (narrow early layers crowd)
    gap = (layers[-1][2] if layers else 0) / max_ticks
    shown, last = [], None
    for layer in layers:
        centre = (layer[1] + layer[2] - 1) / 2
        if last is None or centre - last >= gap:
            shown.append(layer)
            last = centre
    ticktext = [short_layer(n) for n, _, _ in shown]
    fig.update_xaxes(tickvals=[(s + e - 1) / 2 for _, s, e in shown], ticktext=ticktext, tickangle=-35,
                     showgrid=False, zeroline=False, title=dict(text="filters, layers shallow → deep", standoff=6),
                     range=[-0.5, (layers[-1][2] if layers else 1) - 0.5])
    fig.update_layout(margin=dict(l=64, r=16, t=30, b=text_px(ticktext, 35) + 34))


def sort_within_layers(values: np.ndarray, layers: Layers) -> np.ndarray:
    """Each layer's entries in descending order, layers kept in place (the paper's Figure 2 ordering)."""
    values = np.asarray(values, dtype=float)
    out = values.copy()
    for _, start, stop in layers:
        out[start:stop] = np.sort(values[start:stop])[::-1]
    return out


def average_profiles_figure(mean_correct: np.ndarray, mean_wrong: np.ndarray, layers: Layers) -> go.Figure:
    """Figure 2: average standardized profiles of correctly vs wrongly classified samples, each layer's
    filters sorted (so x is a rank within the layer); a trace per layer so the hover names the layer."""
    fig = go.Figure()
    for values, name, colour in ((mean_correct, "correct", CORRECT), (mean_wrong, "misclassified", WRONG)):
        ordered = sort_within_layers(values, layers)
        for i, (layer, start, stop) in enumerate(layers or [("filters", 0, len(ordered))]):
            fig.add_trace(go.Scatter(x=np.arange(start, stop), y=ordered[start:stop], mode="lines", name=name,
                                     legendgroup=name, showlegend=i == 0, line=dict(color=colour, width=1.4),
                                     meta=[short_layer(layer)],
                                     hovertemplate=f"{name}<br>%{{meta[0]}}, rank %{{pointNumber}} in the layer"
                                                   "<br>mean z = %{y:.2f}<extra></extra>"))
    fig.update_yaxes(title="mean standardized saliency", zeroline=True, zerolinecolor="#cbd2d9", gridcolor="#f0f2f5")
    _base_layout(fig, 380, legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    _layer_bands(fig, layers)
    return fig


def raw_gradient_figure(mean_raw: np.ndarray, layers: Layers) -> go.Figure:
    """Figure 1: raw mean |dL/dW| per filter over the dataset; its spread across layers is why profiles are
    standardized before comparing filters."""
    mean_raw = np.asarray(mean_raw, dtype=float)
    # one SVG marker per filter is fine for small nets; ResNet-50's ~26k filters draw much faster as a line
    mode = "markers" if len(mean_raw) <= MAX_MARKERS else "lines"
    fig = go.Figure(go.Scatter(x=np.arange(len(mean_raw)), y=mean_raw, mode=mode, line=dict(width=1, color=ACCENT),
                                 marker=dict(size=3, color=ACCENT), name="mean |grad|",
                                 hovertemplate="filter %{x}<br>mean |grad| = %{y:.3g}<extra></extra>"))
    positive = mean_raw[mean_raw > 0]
    fig.update_yaxes(title="mean |dL/dW| (log)", type="log" if positive.size else "linear", gridcolor="#f0f2f5")
    _base_layout(fig, 340, showlegend=False)
    _layer_bands(fig, layers)
    return fig


def filter_label(item: dict) -> str:
    return f"{short_layer(str(item['layer']))} #{item['channel']}"


def filter_name(layers: Layers, filter_id: int) -> str:
    """``layer4.0.conv1 #19``: the one name a filter has on every view (its global index is secondary)."""
    for name, start, stop in layers:
        if start <= filter_id < stop:
            return f"{short_layer(name)} #{filter_id - start}"
    return f"filter {filter_id}"


def top_filters_figure(filters: Sequence[dict], selected: Sequence[int] = (), layers: Layers = (),
                       chosen: int | None = None) -> go.Figure:
    """Most salient filters first, as horizontal bars of their z-score; pruned ones are red, the ``chosen``
    one (whose samples are shown) outlined. A z at or below 0 is no more salient than usual, so such bars are
    grey and the chart says so. ``customdata`` is the global filter id, used when a bar is clicked."""
    if not filters:
        return empty_figure("no filters")
    off = set(int(s) for s in selected)
    labels = [filter_label(f) for f in filters]
    z = [float(f["z"]) for f in filters]
    colours = [WRONG if int(f["filter"]) in off else (ACCENT if v > 0 else MUTED) for f, v in zip(filters, z)]
    outline = [3 if chosen is not None and int(f["filter"]) == int(chosen) else 0 for f in filters]
    fig = go.Figure(go.Bar(
        x=z, y=labels, orientation="h", marker=dict(color=colours, line=dict(color=INK, width=outline)),
        customdata=[int(f["filter"]) for f in filters],
        text=[f"{v:.1f}" for v in z], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}<br>z = %{x:.2f}<br>filter id %{customdata}<br>click: where else it is salient"
                      "<extra></extra>",
    ))
    if max(z) <= 0:
        fig.add_annotation(text="no filter is more salient than usual (every z ≤ 0)", showarrow=False,
                           xref="paper", yref="paper", x=0.02, y=1.0, yanchor="bottom", xanchor="left",
                           font=dict(color=WRONG, size=12))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    z = [float(f["z"]) for f in filters]
    low, high = min(0.0, min(z)), max(0.0, max(z))
    pad = 0.14 * ((high - low) or 1.0)  # room for the value printed beyond each bar's end
    fig.update_xaxes(title=dict(text="standardized saliency (z)", standoff=6), gridcolor="#f0f2f5",
                     zerolinecolor="#cbd2d9", range=[low - pad if low < 0 else 0.0, high + pad if high > 0 else 0.0])
    return _base_layout(fig, 60 + 21 * len(filters), bargap=0.25,
                        margin=dict(l=text_px(labels), r=36, t=24 if max(z) <= 0 else 10, b=46))


def profile_figure(profile: np.ndarray, layers: Layers, marked: Sequence[int] = ()) -> go.Figure:
    """The full standardized profile of one sample in filter order, its top filters marked."""
    profile = np.asarray(profile, dtype=float)
    fig = go.Figure()
    # a trace per layer, so the hover names a filter as everywhere else: layer and channel (the point's
    # number within its trace), the global index second
    for name, start, stop in layers or [("filter", 0, len(profile))]:
        fig.add_trace(go.Scatter(x=np.arange(start, stop), y=profile[start:stop], mode="lines",
                                 line=dict(color=MUTED, width=1), name=short_layer(name), meta=[short_layer(name)],
                                 hovertemplate="%{meta[0]} #%{pointNumber}<br>z = %{y:.2f}<br>filter id %{x}"
                                               "<extra></extra>"))
    marked = np.asarray([m for m in marked if 0 <= int(m) < len(profile)], dtype=int)
    if marked.size:
        names = [filter_name(layers, int(m)) for m in marked]
        fig.add_trace(go.Scatter(x=marked, y=profile[marked], mode="markers", name="top filters", text=names,
                                   marker=dict(color=WRONG, size=8, line=dict(color="white", width=1)),
                                   customdata=marked,
                                   hovertemplate="%{text}<br>z = %{y:.2f}<br>filter id %{x}<extra>top filter</extra>"))
    fig.update_yaxes(title="z", gridcolor="#f0f2f5", zerolinecolor="#cbd2d9")
    _base_layout(fig, 300, showlegend=False)
    _layer_bands(fig, layers)
    return fig


def probability_figure(class_names: Sequence[str], before: Sequence[float], after: Sequence[float] | None = None,
                       true_label: int | None = None, top: int = 6) -> go.Figure:
    """Class probabilities before (and after) pruning, for the ``top`` classes most likely either way;
    the true class is always shown and marked."""
    before = np.asarray(before, dtype=float)
    after_arr = None if after is None else np.asarray(after, dtype=float)
    score = before if after_arr is None else np.maximum(before, after_arr)
    keep = list(np.argsort(-score)[:top])
    if true_label is not None and 0 <= true_label < len(before) and true_label not in keep:
        keep[-1] = true_label
    names = [(f"✔ {class_names[i]}" if i == true_label else str(class_names[i])) for i in keep]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=before[keep], orientation="h", name="before pruning", marker_color=MUTED,
                         hovertemplate="%{y}: %{x:.1%}<extra>before</extra>"))
    if after_arr is not None:
        fig.add_trace(go.Bar(y=names, x=after_arr[keep], orientation="h", name="after pruning",
                             marker_color=ACCENT, hovertemplate="%{y}: %{x:.1%}<extra>after</extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", gridcolor="#f0f2f5")
    fig.update_yaxes(autorange="reversed", showgrid=False)
    return _base_layout(fig, 70 + 30 * len(keep) * (1 if after_arr is None else 1.5), barmode="group",
                        legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom"), bargap=0.2,
                        showlegend=after_arr is not None, margin=dict(l=text_px(names), r=14, t=30, b=30))
