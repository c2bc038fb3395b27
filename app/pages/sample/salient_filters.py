"""Card: the most salient filters as bars; the ones switched off in the pruning card show in red. A click on a
bar (or, by keyboard, a row of the table under it) lists the samples where that filter is most salient,
right under the chart."""

from __future__ import annotations

from dash import Input, Output, State, dcc, html

from app import figures
from app.components import card
from app.pages.sample import filter_search
from app.pages.sample.pruning import CHECKLIST, checked_filters
from app.figures import filter_name
from app.pages.sample.view import View, sid

GRAPH = sid("filters-graph")


def layout(view: View):
    figure = figures.empty_figure("Could not load the salient filters.") if view.filters is None \
        else figures.top_filters_figure(view.filters, checked_filters(view), view.layers, view.state["filter"])
    return card(
        "Most salient filters",
        dcc.Graph(id=GRAPH, config={"displayModeBar": False}, figure=figure, className="clickable-graph"),
        filters_table(view),
        filter_search.result_box(view.filter_answer),
        html.Data(id=filter_search.SELECTED, value="" if view.state["filter"] is None else str(view.state["filter"])),
        dcc.Store(id=sid("scrolled")),
        extra=html.Span("click a bar: where else that filter is salient, and its page", className="hint"),
        className="col-7",
    )


def filters_table(view: View) -> html.Details:
    """The chart as a table (its text alternative), each row with a button: the keyboard way to a filter."""
    names = [filter_name(view.layers, int(f["filter"])) for f in view.filters or []]
    rows = [html.Tr([html.Td(i + 1), html.Td(name), html.Td(f"{float(f['z']):.2f}"),
                     html.Td(html.Button("show where else", className="btn btn-small",
                                         id={"type": filter_search.PICK, "filter": int(f["filter"])},
                                         **{"aria-label": f"samples where {name} is most salient"})),
                     html.Td(filter_search.filter_page_link(int(f["filter"]), "open ›",
                                                           title=f"the page of {name}"))])
            for i, (f, name) in enumerate(zip(view.filters or [], names))]
    return html.Details([html.Summary("the same filters as a table (keyboard: pick one)"),
                         html.Table([html.Thead(html.Tr([html.Th("rank"), html.Th("filter"), html.Th("z"),
                                                         html.Th("samples"), html.Th("filter page")])),
                                     html.Tbody(rows)],
                                    className="flip-table", id=sid("filters-table"))],
                        className="table-details")


# recolouring the ticked bars and outlining the chosen one needs no server round trip
_RECOLOR_BARS = """function(checked, chosen, fig) {
    if (!fig || !fig.data || !fig.data.length || !Array.isArray(fig.data[0].customdata)) {
        return window.dash_clientside.no_update;
    }
    const on = new Set((checked || []).map(Number));
    chosen = chosen === '' || chosen === null || chosen === undefined ? null : Number(chosen);
    const bar = Object.assign({}, fig.data[0]);
    const z = bar.x;
    bar.marker = Object.assign({}, bar.marker, {
        color: bar.customdata.map((f, i) => on.has(Number(f)) ? '%s' : (z[i] > 0 ? '%s' : '%s')),
        line: {color: '%s', width: bar.customdata.map(f => Number(f) === chosen ? 3 : 0)}});
    return Object.assign({}, fig, {data: [bar].concat(fig.data.slice(1))});
}""" % (figures.WRONG, figures.ACCENT, figures.MUTED, figures.INK)


def register(app, client) -> None:
    app.clientside_callback(_RECOLOR_BARS, Output(GRAPH, "figure"), Input(CHECKLIST, "value"),
                            Input(filter_search.SELECTED, "value"), State(GRAPH, "figure"), prevent_initial_call=True)
