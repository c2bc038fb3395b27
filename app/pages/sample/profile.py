"""Card: the sample's full saliency profile; a click on a filter (here or on the salient-filters bars) lists
the samples where that filter is most salient (under the bar chart)."""

from __future__ import annotations

import numpy as np
from dash import dcc, html

from app import figures
from app.client import BackendClient
from app.components import card
from app.pages.sample import filter_search
from app.pages.sample.salient_filters import GRAPH as FILTERS_GRAPH
from app.pages.sample.view import View, sid

GRAPH = sid("profile-graph")
MARKED = 10  # the profile's red dots: this many most salient filters


def layout(view: View):
    if view.profile is None:
        figure = figures.empty_figure(f"Could not load the profile: {view.load_error}", 260)
    else:
        layers = figures.parse_layers(view.profile.get("layers") or view.info.get("layers"))
        marked = [int(f["filter"]) for f in (view.filters or [])[:MARKED]]
        figure = figures.profile_figure(np.asarray(view.profile["z"], dtype=float), layers, marked)
    return card(
        "Full saliency profile",
        dcc.Graph(id=GRAPH, config={"displaylogo": False}, figure=figure),
        extra=html.Span("filters in model order, layers shallow → deep; red dots: the top 10", className="hint"),
    )


def register(app, client: BackendClient) -> None:
    filter_search.register(app, client, FILTERS_GRAPH, GRAPH)
