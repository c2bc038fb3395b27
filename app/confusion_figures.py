"""Figures of the confusion page, as pure functions of arrays (unit-tested like app/figures.py).

A confusion's fingerprint is the mean standardized profile of its mistakes; drawn beside the same mean over
the true class's correct samples, the filters where the two part are the ones this kind of mistake leans on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app import figures


def fingerprint_figure(profile: Sequence[float], class_profile: Sequence[float] | None, layers: figures.Layers,
                       top_filters: Sequence[int], true_name: str, pred_name: str) -> go.Figure:
    """The pair's mean profile in filter order (layers shaded), its top filters marked (``customdata``: the
    filter id, so a click can open the filter), and the true class's correct samples' mean profile as the
    baseline (omitted when the class has no correct sample)."""
    profile = np.asarray(profile, dtype=float)
    if profile.size == 0:
        return figures.empty_figure("no fingerprint: the backend sent no profile")
    fig = figures.profile_figure(profile, layers, marked=top_filters)
    mistakes = f"{true_name} predicted as {pred_name}"
    fig.update_traces(selector=0, name=f"mistakes: {mistakes}", line=dict(color=figures.WRONG, width=1.2),
                      hovertemplate=f"{mistakes}<br>%{{text}}<br>mean z = %{{y:.2f}}<extra></extra>")
    fig.update_traces(selector=1, name="top filters", marker=dict(color=figures.INK, size=8),
                      hovertemplate="%{text}<br>mean z = %{y:.2f}<br>click: the filter's page<extra>top filter"
                                    "</extra>")
    if class_profile is not None:
        baseline = np.asarray(class_profile, dtype=float)
        shown = figures.decimate(baseline, layers)
        fig.add_trace(go.Scatter(x=shown, y=baseline[shown], mode="lines", name=f"correct {true_name} (baseline)",
                                 text=figures.filter_hover_names(layers, shown),
                                 line=dict(color=figures.CORRECT, width=1.2),
                                 hovertemplate=f"correct {true_name}<br>%{{text}}<br>mean z = %{{y:.2f}}"
                                               "<extra></extra>"))
    fig.update_yaxes(title="mean standardized saliency (z)")
    fig.update_layout(height=340, showlegend=True, margin=dict(t=44),
                      legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    return fig


def filter_rows(top_filters: Sequence[dict], class_profile: Sequence[float] | None) -> list[dict]:
    """The top filters as table rows: the pair's mean z, the true class's correct samples' mean z on the same
    filter (None without a baseline) and how far the mistakes stand above it."""
    baseline = None if class_profile is None else np.asarray(class_profile, dtype=float)
    rows = []
    for item in top_filters:
        index, mean_z = int(item["filter"]), float(item["mean_z"])
        correct = None if baseline is None else float(baseline[index])
        rows.append({"filter": index, "name": figures.filter_label(item), "mean_z": mean_z, "correct_z": correct,
                     "excess": None if correct is None else mean_z - correct})
    return rows
