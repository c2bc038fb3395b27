"""Card: the sample's full saliency profile; a click on a filter (here or on the salient-filters bars) lists
other mistakes that have that filter among their most salient."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from dash import Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, thumbnail
from app.pages.sample.salient_filters import GRAPH as FILTERS_GRAPH
from app.pages.sample.view import View, sid, subject_of

GRAPH = sid("profile-graph")
MARKED = 10  # the profile's red dots: this many most salient filters
FILTER_SEARCH_CANDIDATES = 40  # mistakes examined when looking for others sharing a salient filter
FILTER_RANK = 10  # "among the most salient filters" = within this many


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
        html.Div(id=sid("filter-mistakes"), className="filter-mistakes"),
        extra=html.Span("filters in model order, layers shallow → deep; red dots: the top 10", className="hint"),
    )


def filter_of_click(click_data) -> int | None:
    """The filter id a click on the bar chart or the profile's marked points refers to."""
    try:
        point = click_data["points"][0]
        value = point.get("customdata", point.get("x"))
        return int(value[0] if isinstance(value, list) else value)
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def mistakes_with_filter(client: BackendClient, subject: Subject, filter_id: int):
    """Other mistakes that have ``filter_id`` among their ``FILTER_RANK`` most salient filters.

    The backend has no index from filters to samples, so the candidates are this sample's nearest mistakes
    in the saliency space of that filter's layer (the likeliest to share it), each checked exactly."""
    try:
        info = client.info()
        layers = figures.parse_layers(info.get("layers"))
        layer = next(i for i, (_, start, stop) in enumerate(layers) if start <= filter_id < stop)
        hits = client.neighbors(subject, k=FILTER_SEARCH_CANDIDATES, layers=(layer, layer + 1), space="saliency",
                                misclassified_only=True)
        names = info.get("classes", [])
        # the candidates' top filters are independent requests: ask for them side by side
        with ThreadPoolExecutor(max_workers=8) as pool:
            tops = list(pool.map(lambda hit: client.filters(Subject("samples", str(hit["id"])), top=FILTER_RANK),
                                 hits))
        found = []
        for hit, top in zip(hits, tops):
            rank = next((r for r, f in enumerate(top) if int(f["filter"]) == filter_id), None)
            if rank is not None:
                found.append((hit, rank, float(top[rank]["z"])))
    except (BackendError, StopIteration) as exc:
        message = exc.message if isinstance(exc, BackendError) else f"filter {filter_id} is not in any layer"
        return alert(f"Could not search for mistakes with this filter: {message}")
    name = f"{figures.short_layer(layers[layer][0])} #{filter_id - layers[layer][1]}"
    title = html.Div([html.B(f"Mistakes with filter {name} among their top {FILTER_RANK}: "),
                      html.Span(f"{len(found)} of the {len(hits)} nearest mistakes in that layer")],
                     className="strip-title")
    if not found:
        return html.Div([title, alert("None of them share it.", "info")])
    tiles = [thumbnail(Subject("samples", str(hit["id"])), names, hit["label"], hit["pred"],
                       caption=f"rank {rank + 1}, z {z:.1f}", id_prefix=sid("fm")) for hit, rank, z in found]
    return html.Div([title, html.Div(tiles, className="strip")])


def register(app, client: BackendClient) -> None:
    @app.callback(Output(sid("filter-mistakes"), "children"), Input(FILTERS_GRAPH, "clickData"),
                  Input(GRAPH, "clickData"), State(sid("subject"), "data"), prevent_initial_call=True)
    def _filter_mistakes(bar_click, profile_click, subject):
        filter_id = filter_of_click(bar_click if ctx.triggered_id == FILTERS_GRAPH else profile_click)
        if filter_id is None:
            raise PreventUpdate
        return mistakes_with_filter(client, subject_of(subject), filter_id)
