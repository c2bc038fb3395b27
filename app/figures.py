"""Plotly figures as pure functions of arrays (no HTTP, no Dash state), so they are unit-testable.

Profiles are drawn with layers left to right (shallow to deep) on alternating shaded bands, the way the
paper draws them. Large models stay readable: a profile longer than ``MAX_POINTS`` is drawn as each layer's
per-bin lowest and highest values (every spike stays visible), layer labels are shortened (``layer_labels``)
and the full name is in each point's hover text.
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
    """``layer3.1.conv2.weight`` -> ``layer3.1.conv2``, ``attn.in_proj_weight`` -> ``attn.in_proj`` (the weight
    suffix carries no information)."""
    for suffix in (".weight", "_weight"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


MAX_LABEL = 28  # characters of a layer label on an axis; the full name is in the hover text


def fit_label(label: str, width: int = MAX_LABEL) -> str:
    """``label`` in at most ``width`` characters: inner dotted parts become ``…`` first, the longest word first
    and block numbers last (the first part names the stage, the last the operation), then characters in the
    middle."""
    parts = label.split(".")
    while len(label) > width and len(parts) > 2:
        inner = [i for i, part in enumerate(parts[1:-1], start=1) if part != "…"]
        if not inner:
            break
        parts[max(inner, key=lambda i: (not parts[i].isdigit(), len(parts[i])))] = "…"
        parts = [p for i, p in enumerate(parts) if not (p == "…" and i > 0 and parts[i - 1] == "…")]
        label = ".".join(parts)
    if len(label) > width:
        head = (width - 1) // 2
        label = label[:head] + "…" + label[len(label) - (width - 1 - head):]
    return label


def layer_labels(names: Sequence[str], width: int = MAX_LABEL) -> list[str]:
    """Axis labels for a model's layers: the weight suffix dropped, then the word parts that most layers share
    (``encoder``, ``layers``, ``blocks``: they tell layers apart no better than their position), then
    ``fit_label``. Numbered parts are always kept."""
    parts = [short_layer(str(name)).split(".") for name in names]
    counts: dict[str, int] = {}
    for split in parts:
        for part in set(split[:-1]):
            counts[part] = counts.get(part, 0) + 1
    shared = {part for part, count in counts.items() if count > len(parts) / 2 and not part.isdigit()}
    labels = []
    for split in parts:
        kept = [part for part in split[:-1] if part not in shared] + split[-1:]
        labels.append(fit_label(".".join(kept), width))
    return labels


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
MAX_POINTS = 4000  # points of one profile line; longer profiles are drawn as a per-bin min/max envelope
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


def decimate(values: np.ndarray, layers: Layers, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of the entries a line of ``values`` draws: all of them when there are at most ``max_points``,
    else, layer by layer, each bin's lowest and highest entry, so peaks survive and no bin spans two layers."""
    count = len(values)
    if count <= max_points:
        return np.arange(count)
    values = np.asarray(values, dtype=float)
    spans = [(start, stop) for _, start, stop in layers if stop > start] or [(0, count)]
    keep = []
    for start, stop in spans:
        bins = max(1, round((stop - start) * (max_points // 2) / count))
        edges = np.unique(np.linspace(start, stop, bins + 1).astype(int))
        for low, high in zip(edges[:-1], edges[1:]):
            chunk = values[low:high]
            keep += [low + int(np.argmin(chunk)), low + int(np.argmax(chunk))]
    return np.unique(keep)


def filter_hover_names(layers: Layers, ids: np.ndarray) -> list[str]:
    """``full.layer.name #channel`` for each filter id (the hover text of profile points)."""
    starts = np.array([start for _, start, _ in layers])
    owners = np.searchsorted(starts, ids, side="right") - 1
    return [f"{short_layer(layers[o][0])} #{i - layers[o][1]}" if o >= 0 else f"filter {i}"
            for o, i in zip(owners.tolist(), np.asarray(ids).tolist())]


def layer_rank_names(layers: Layers, ids: np.ndarray) -> list[str]:
    """``layer, rank r in the layer`` for positions of a profile sorted within each layer (Figure 2)."""
    return [name.split(" #")[0] + f", rank {int(name.split(' #')[1]) + 1} in the layer" if " #" in name else name
            for name in filter_hover_names(layers, ids)]


def _profile_line(values: np.ndarray, layers: Layers, by_layer: bool = False, hover=filter_hover_names,
                  **trace) -> go.Scatter:
    """One profile as a line (decimated when long), every point's hover text from ``hover`` (by default its
    layer and channel); ``by_layer``: x as in layer_depth_x, else the filter index."""
    shown = decimate(values, layers)
    x = layer_depth_x(layers, len(values))[shown] if by_layer else shown
    return go.Scatter(x=x, y=np.asarray(values, dtype=float)[shown], text=hover(layers, shown), **trace)


def _layer_bands(fig: go.Figure, layers: Layers, max_ticks: int = 14) -> None:
    """Shade every other layer and label a readable subset of them on the x axis."""
    # one layout update for all bands: add_vrect per layer costs seconds on models with hundreds of layers
    fig.update_layout(shapes=[dict(type="rect", xref="x", yref="paper", x0=start - 0.5, x1=stop - 0.5, y0=0, y1=1,
                                   fillcolor="#eef1f5", line_width=0, layer="below")
                              for i, (_, start, stop) in enumerate(layers) if i % 2 == 0])
    # label a layer only if its centre is far enough from the last labelled one (narrow early layers crowd)
    gap = (layers[-1][2] if layers else 0) / max_ticks
    labels = layer_labels([name for name, _, _ in layers])
    shown, ticktext, last = [], [], None
    for layer, label in zip(layers, labels):
        centre = (layer[1] + layer[2] - 1) / 2
        if last is None or centre - last >= gap:
            shown.append(layer)
            ticktext.append(label)
            last = centre
    fig.update_xaxes(tickvals=[(s + e - 1) / 2 for _, s, e in shown], ticktext=ticktext, tickangle=-35,
                     showgrid=False, zeroline=False, title=dict(text="filters, layers shallow → deep", standoff=6),
                     range=[-0.5, (layers[-1][2] if layers else 1) - 0.5])
    fig.update_layout(margin=dict(l=64, r=16, t=30, b=text_px(ticktext, 35) + 34))


def layer_depth_x(layers: Layers, count: int) -> np.ndarray:
    """Each filter's x when every layer gets the same width (as in the paper's Figures 1 and 2): the layer's
    index plus the filter's relative position within the layer (0..1), so deep, wide stages do not take
    most of the axis."""
    x = np.arange(count, dtype=float)
    for i, (_, start, stop) in enumerate(layers):
        x[start:stop] = i + (np.arange(stop - start) + 0.5) / (stop - start)
    return x


def _equal_layer_axis(fig: go.Figure, layers: Layers, max_ticks: int = 14) -> None:
    """Layers of equal width: every boundary marked, every other layer shaded, a readable subset labelled."""
    # one layout update for all shapes: a shape call per layer costs seconds on models with hundreds of layers
    bands = [dict(type="rect", xref="x", yref="paper", x0=i, x1=i + 1, y0=0, y1=1, fillcolor="#eef1f5",
                  line_width=0, layer="below") for i in range(0, len(layers), 2)]
    lines = [dict(type="line", xref="x", yref="paper", x0=i, x1=i, y0=0, y1=1, line=dict(width=1, color="#cbd2d9"),
                  layer="below") for i in range(len(layers) + 1)]
    fig.update_layout(shapes=bands + lines)
    every = max(1, -(-len(layers) // max_ticks))
    shown = list(range(0, len(layers), every))
    labels = layer_labels([name for name, _, _ in layers])
    ticktext = [labels[i] for i in shown]
    fig.update_xaxes(tickvals=[i + 0.5 for i in shown], ticktext=ticktext, tickangle=-35, showgrid=False,
                     zeroline=False, range=[0, max(1, len(layers))],
                     title=dict(text="layers shallow → deep, each the same width", standoff=6))
    fig.update_layout(margin=dict(l=64, r=16, t=30, b=text_px(ticktext, 35) + 34))


def _filter_axis(fig: go.Figure, layers: Layers, by_layer: bool) -> None:
    if by_layer:
        _equal_layer_axis(fig, layers)
    else:
        _layer_bands(fig, layers)


def sort_within_layers(values: np.ndarray, layers: Layers) -> np.ndarray:
    """Each layer's entries in descending order, layers kept in place (the paper's Figure 2 ordering)."""
    values = np.asarray(values, dtype=float)
    out = values.copy()
    for _, start, stop in layers:
        out[start:stop] = np.sort(values[start:stop])[::-1]
    return out


def average_profiles_figure(mean_correct: np.ndarray, mean_wrong: np.ndarray, layers: Layers,
                            by_layer: bool = True) -> go.Figure:
    """Figure 2: average standardized profiles of correctly vs wrongly classified samples, each layer's
    filters sorted (so a point is a rank within its layer, not a channel); ``by_layer``: every layer the
    same width (else one x step per filter)."""
    fig = go.Figure()
    for values, name, colour in ((mean_correct, "correct", CORRECT), (mean_wrong, "misclassified", WRONG)):
        fig.add_trace(_profile_line(sort_within_layers(values, layers), layers, by_layer, hover=layer_rank_names,
                                    mode="lines", name=name, line=dict(color=colour, width=1.4),
                                    hovertemplate=f"{name}<br>%{{text}}<br>mean z = %{{y:.2f}}<extra></extra>"))
    fig.update_yaxes(title="mean standardized saliency", zeroline=True, zerolinecolor="#cbd2d9", gridcolor="#f0f2f5")
    _base_layout(fig, 380, legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    _filter_axis(fig, layers, by_layer)
    return fig


def raw_gradient_figure(mean_raw: np.ndarray, layers: Layers, by_layer: bool = True) -> go.Figure:
    """Figure 1: raw mean |dL/dW| per filter over the dataset; its spread across layers is why profiles are
    standardized before comparing filters. ``by_layer``: every layer the same width, filters in model order
    within it (else one x step per filter)."""
    mean_raw = np.asarray(mean_raw, dtype=float)
    # one SVG marker per filter is fine for small nets; ResNet-50's ~26k filters draw much faster as a line
    mode = "markers" if len(mean_raw) <= MAX_MARKERS else "lines"
    fig = go.Figure(_profile_line(mean_raw, layers, by_layer, mode=mode, line=dict(width=1, color=ACCENT),
                                  marker=dict(size=3, color=ACCENT), name="mean |grad|",
                                  hovertemplate="%{text}<br>mean |grad| = %{y:.3g}<extra></extra>"))
    positive = mean_raw[mean_raw > 0]
    fig.update_yaxes(title="mean |dL/dW| (log)", type="log" if positive.size else "linear", gridcolor="#f0f2f5")
    _base_layout(fig, 340, showlegend=False)
    _filter_axis(fig, layers, by_layer)
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
    full = [filter_label(f) for f in filters]
    labels = [fit_label(label) for label in full]
    if len(set(labels)) < len(labels):  # shortening made two bars alike: they would be drawn as one
        labels = full
    z = [float(f["z"]) for f in filters]
    colours = [WRONG if int(f["filter"]) in off else (ACCENT if v > 0 else MUTED) for f, v in zip(filters, z)]
    outline = [3 if chosen is not None and int(f["filter"]) == int(chosen) else 0 for f in filters]
    fig = go.Figure(go.Bar(
        x=z, y=labels, orientation="h", marker=dict(color=colours, line=dict(color=INK, width=outline)),
        customdata=[int(f["filter"]) for f in filters], hovertext=full,
        text=[f"{v:.1f}" for v in z], textposition="outside", cliponaxis=False,
        hovertemplate="%{hovertext}<br>z = %{x:.2f}<br>filter id %{customdata}<br>click: where else it is salient"
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
    fig = go.Figure(_profile_line(profile, layers, mode="lines", line=dict(color=MUTED, width=1), name="profile",
                                  hovertemplate="%{text}<br>z = %{y:.2f}<br>filter id %{x}<extra></extra>"))
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
                       true_label: int | None = None, top: int = 6, change: str = "pruning") -> go.Figure:
    """Class probabilities before (and after) ``change``, for the ``top`` classes most likely either way;
    the true class is always shown and marked."""
    before = np.asarray(before, dtype=float)
    after_arr = None if after is None else np.asarray(after, dtype=float)
    score = before if after_arr is None else np.maximum(before, after_arr)
    keep = list(np.argsort(-score)[:top])
    if true_label is not None and 0 <= true_label < len(before) and true_label not in keep:
        keep[-1] = true_label
    names = [(f"✔ {class_names[i]}" if i == true_label else str(class_names[i])) for i in keep]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=before[keep], orientation="h", name=f"before {change}", marker_color=MUTED,
                         hovertemplate="%{y}: %{x:.1%}<extra>before</extra>"))
    if after_arr is not None:
        fig.add_trace(go.Bar(y=names, x=after_arr[keep], orientation="h", name=f"after {change}",
                             marker_color=ACCENT, hovertemplate="%{y}: %{x:.1%}<extra>after</extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", gridcolor="#f0f2f5")
    fig.update_yaxes(autorange="reversed", showgrid=False)
    return _base_layout(fig, 70 + 30 * len(keep) * (1 if after_arr is None else 1.5), barmode="group",
                        legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom"), bargap=0.2,
                        showlegend=after_arr is not None, margin=dict(l=text_px(names), r=14, t=30, b=30))
