"""Card: the most salient filters as bars; the ones switched off in the pruning card show in red, and a click
on a bar searches other mistakes with that filter (in the profile card)."""

from __future__ import annotations

from dash import Input, Output, State, dcc, html

from app import figures
from app.components import card
from app.pages.sample.pruning import CHECKLIST, checked_filters
from app.pages.sample.view import View, sid

GRAPH = sid("filters-graph")


def layout(view: View):
    figure = figures.empty_figure("Could not load the salient filters.") if view.filters is None \
        else figures.top_filters_figure(view.filters, checked_filters(view))
    return card(
        "Most salient filters",
        dcc.Graph(id=GRAPH, config={"displayModeBar": False}, figure=figure, className="clickable-graph"),
        extra=html.Span("click a bar: other mistakes with that filter", className="hint"),
        className="col-7",
    )


# recolouring the ticked bars needs no server round trip
_RECOLOR_BARS = """function(checked, fig) {
    if (!fig || !fig.data || !fig.data.length || !Array.isArray(fig.data[0].customdata)) {
        return window.dash_clientside.no_update;
    }
    const on = new Set((checked || []).map(Number));
    const bar = Object.assign({}, fig.data[0]);
    bar.marker = Object.assign({}, bar.marker, {color: bar.customdata.map(f => on.has(Number(f)) ? '%s' : '%s')});
    return Object.assign({}, fig, {data: [bar].concat(fig.data.slice(1))});
}""" % (figures.WRONG, figures.ACCENT)


def register(app, client) -> None:
    app.clientside_callback(_RECOLOR_BARS, Output(GRAPH, "figure"), Input(CHECKLIST, "value"),
                            State(GRAPH, "figure"), prevent_initial_call=True)
