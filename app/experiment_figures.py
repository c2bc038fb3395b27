"""Plotly figures of the validation experiments, as pure functions of the JSON that `pss experiments` writes.

Every curve is drawn with its 95% bootstrap band; salient / random / least salient keep one color each across
figures so they can be compared at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures import ACCENT, MUTED, WRONG, _base_layout, empty_figure

MODE_COLORS = {"salient": WRONG, "random": ACCENT, "least": MUTED, "whole": "#2f7d4f"}
MODE_LABELS = {"salient": "most salient", "random": "random", "least": "least salient", "whole": "whole network"}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _scaled(values: Sequence, scale: float) -> list:
    return [None if v is None else v * scale for v in values]


def _band(fig: go.Figure, x: Sequence, stat: dict, mode: str, row: int, col: int, show: bool, scale: float = 1.0):
    """A mean line with its confidence band (drawn as one closed polygon under the line)."""
    color = MODE_COLORS[mode]
    low, high = _scaled(stat["low"], scale), _scaled(stat["high"], scale)
    fig.add_trace(go.Scatter(x=[*x, *x[::-1]], y=[*high, *low[::-1]], mode="lines", fill="toself", fillcolor=_rgba(color, 0.15),
                             line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=mode),
                  row=row, col=col)
    fig.add_trace(go.Scatter(x=list(x), y=_scaled(stat["mean"], scale), mode="lines+markers", name=MODE_LABELS[mode],
                             line=dict(color=color, width=2), marker=dict(size=5), legendgroup=mode, showlegend=show,
                             hovertemplate="n=%{x}: %{y:.2f}<extra>" + MODE_LABELS[mode] + "</extra>"),
                  row=row, col=col)


def _modes(curves: dict) -> list[str]:
    """Modes in a fixed order (the JSON's keys are sorted alphabetically)."""
    return [mode for mode in ("salient", "random", "least") if mode in curves]


def curves_figure(doc: dict) -> go.Figure:
    """Experiments 1 and 2: confidence changes and % corrected against the number of filters acted on."""
    res = doc.get("results", {})
    if not doc.get("num_samples"):
        return empty_figure("no misclassified samples were used")
    panels = [("incorrect_conf_change", "Δ incorrect-class confidence (pts)", 100),
              ("true_conf_change", "Δ true-class confidence (pts)", 100),
              ("corrected_fraction", "samples corrected (%)", 100)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.07)
    for col, (key, _, scale) in enumerate(panels, start=1):
        for mode in _modes(res["curves"]):
            _band(fig, res["n"], res["curves"][mode][key], mode, 1, col, show=col == 1, scale=scale)
        fig.update_xaxes(title_text="filters n", row=1, col=col, gridcolor="#eef1f4")
        fig.update_yaxes(gridcolor="#eef1f4", zerolinecolor="#cbd2d9", row=1, col=col)
    return _base_layout(fig, 340, margin=dict(l=50, r=10, t=40, b=10),
                        legend=dict(orientation="h", y=-0.25, x=0.5, xanchor="center"))


def neighbors_figure(doc: dict) -> go.Figure:
    """Experiment 3: share of neighbours with the same (or reversed) confusion, per space, against chance."""
    share = doc.get("results", {}).get("share", {})
    if not share:
        return empty_figure("no results")
    labels = {"saliency": "saliency (all layers)", "saliency_shallow": "saliency (shallow half)",
              "saliency_deep": "saliency (deep half)", "feature": "feature (penultimate)", "chance": "chance"}
    names = [n for n in labels if n in share]
    means = [100 * (share[n]["mean"] or 0) for n in names]
    err_hi = [100 * ((share[n]["high"] or 0) - (share[n]["mean"] or 0)) for n in names]
    err_lo = [100 * ((share[n]["mean"] or 0) - (share[n]["low"] or 0)) for n in names]
    colors = [WRONG if n.startswith("saliency") else ACCENT if n == "feature" else MUTED for n in names]
    fig = go.Figure(go.Bar(x=[labels[n] for n in names], y=means, marker_color=colors,
                           error_y=dict(type="data", array=err_hi, arrayminus=err_lo, color="#52606d"),
                           hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    fig.update_yaxes(title_text="neighbours with the same confusion (%)", gridcolor="#eef1f4", rangemode="tozero")
    return _base_layout(fig, 320)


def finetuning_figure(doc: dict) -> go.Figure:
    """Experiment 4: after one step on n filters, % of samples and of their neighbours corrected."""
    res = doc.get("results", {})
    if not doc.get("num_samples"):
        return empty_figure("no misclassified samples were used")
    panels = [("sample_corrected", "sample corrected (%)", 100),
              ("neighbors_corrected", "neighbours corrected (%)", 100),
              ("neighbors_true_conf_change", "neighbours' Δ true-class conf. (pts)", 100)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.07)
    n = res["n"]
    for col, (key, _, scale) in enumerate(panels, start=1):
        for mode in _modes(res["curves"]):
            _band(fig, n, res["curves"][mode][key], mode, 1, col, show=col == 1, scale=scale)
        whole = res["whole_network"][key]
        if whole["mean"] is not None:
            fig.add_trace(go.Scatter(x=[n[0], n[-1]], y=[whole["mean"] * scale] * 2, mode="lines",
                                     name=MODE_LABELS["whole"], legendgroup="whole", showlegend=col == 1,
                                     line=dict(color=MODE_COLORS["whole"], dash="dash")), row=1, col=col)
        fig.update_xaxes(title_text="filters n", type="log", row=1, col=col, gridcolor="#eef1f4")
        fig.update_yaxes(gridcolor="#eef1f4", zerolinecolor="#cbd2d9", row=1, col=col)
    return _base_layout(fig, 340, margin=dict(l=50, r=10, t=40, b=10),
                        legend=dict(orientation="h", y=-0.25, x=0.5, xanchor="center"))


def masking_figure(doc: dict) -> go.Figure:
    """Experiment 5: masking the input-space map's top pixels vs as many random pixels."""
    res = doc.get("results", {})
    if not doc.get("num_samples"):
        return empty_figure("no misclassified samples were used")
    panels = [("true_conf_change", "Δ true-class confidence (pts)", 100),
              ("salient_filters_z_change", "Δ saliency (z) of the top filters", 1),
              ("corrected_fraction", "samples corrected (%)", 100)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.08)
    for col, (key, _, scale) in enumerate(panels, start=1):
        for mode, label in (("salient", "salient pixels"), ("random", "random pixels")):
            stat = res[mode][key]
            mean = (stat["mean"] or 0) * scale
            fig.add_trace(go.Bar(x=[label], y=[mean], marker_color=MODE_COLORS[mode], showlegend=False,
                                 error_y=dict(type="data", array=[((stat["high"] or 0) * scale) - mean],
                                              arrayminus=[mean - (stat["low"] or 0) * scale], color="#52606d"),
                                 hovertemplate=f"{label}: %{{y:.2f}}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(gridcolor="#eef1f4", zerolinecolor="#cbd2d9", row=1, col=col)
    return _base_layout(fig, 320, margin=dict(l=50, r=10, t=40, b=40))


def gradcam_figure(doc: dict, class_names: Sequence[str] = ()) -> go.Figure:
    """Experiment 6: the input-space map (top), Grad-CAM and, where the result has it, the plain input
    gradient (the control) of the same misclassified samples."""
    examples = doc.get("results", {}).get("examples", [])
    if not examples:
        return empty_figure("no examples")

    def name(i):
        return class_names[i] if 0 <= i < len(class_names) else str(i)

    titles = [f"#{e['id']}: {name(e['label'])} → {name(e['pred'])}" for e in examples]
    titles += [f"Grad-CAM (ρ = {e['spearman']:.2f})" if e.get("spearman") is not None else "Grad-CAM"
               for e in examples]
    rows = [("input_saliency", "Inferno"), ("gradcam", "Viridis")]
    if all("input_gradient" in e for e in examples):
        rows.append(("input_gradient", "Cividis"))
        titles += ["input gradient"] * len(examples)
    fig = make_subplots(rows=len(rows), cols=len(examples), subplot_titles=titles, vertical_spacing=0.08,
                        horizontal_spacing=0.02)
    for col, e in enumerate(examples, start=1):
        for row, (key, scale) in enumerate(rows, start=1):
            fig.add_trace(go.Heatmap(z=e[key], colorscale=scale, showscale=False,
                                     hovertemplate="%{z:.3g}<extra></extra>"), row=row, col=col)
            fig.update_yaxes(autorange="reversed", scaleanchor=f"x{(row - 1) * len(examples) + col}",
                             visible=False, row=row, col=col)
            fig.update_xaxes(visible=False, row=row, col=col)
    fig.update_annotations(font_size=11)
    return _base_layout(fig, 190 * len(rows), margin=dict(l=50, r=10, t=40, b=10))


def sanity_figure(doc: dict) -> go.Figure:
    """Experiment 7: rank correlation with the original map as stages are randomized, last first."""
    res = doc.get("results", {})
    if not doc.get("num_samples"):
        return empty_figure("no misclassified samples were used")
    steps = ["original", *(f"+ {s}" for s in res["randomized_stage"][1:])]
    fig = make_subplots(rows=1, cols=1)
    for key, mode, label in (("input_saliency_spearman", "salient", "input-space saliency"),
                             ("gradcam_spearman", "random", "Grad-CAM")):
        stat = res[key]
        x = list(range(len(steps)))
        color = MODE_COLORS[mode]
        fig.add_trace(go.Scatter(x=[*x, *x[::-1]], y=[*_scaled(stat["high"], 1), *_scaled(stat["low"], 1)[::-1]],
                                 mode="lines", fill="toself", fillcolor=_rgba(color, 0.15), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=stat["mean"], mode="lines+markers", name=label, line=dict(color=color),
                                 hovertemplate="%{y:.2f}<extra>" + label + "</extra>"))
    fig.update_xaxes(tickvals=list(range(len(steps))), ticktext=steps, title_text="stages randomized (cumulative)")
    fig.update_yaxes(title_text="Spearman ρ with the original map", range=[-0.2, 1.05], gridcolor="#eef1f4")
    return _base_layout(fig, 320, legend=dict(orientation="h", y=1.12, x=0))


FIGURES = {
    "pruning": curves_figure,
    "perturbation": curves_figure,
    "neighbors": neighbors_figure,
    "finetuning": finetuning_figure,
    "masking": masking_figure,
    "gradcam": gradcam_figure,
    "sanity": sanity_figure,
}
