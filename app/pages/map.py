"""Mistake map: every misclassified sample as a dot, placed by its saliency profile (left) and by its features
(right), coloured by confusion pair or failure mode; a lasso or a failure mode selects mistakes and shows the
filters they share (issue 12).

The figures are built on the server from the backend's columnar map (``app.map_figures``); hovering, clicking
and lassoing are handled in the browser (clientside callbacks), so only a selection's ids travel back.
"""

from __future__ import annotations

import dash
import numpy as np
from dash import ALL, Input, Output, Patch, State, ctx, dcc, html, no_update

from app import map_figures as mf
from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, class_name, error_alert, thumbnail
from app.figures import filter_label
from app.pages import group_fix, page
from app.url_state import Field, QueryState, choice, integer

PREFIX = "map"
SPACES = ("saliency", "feature")
SELECTION = f"{PREFIX}-selection"  # {"ids": [...], "source": "saliency|feature|mode", "mode": int|None} or None
MAX_SELECTION = 5000  # sample ids per shared-filter request (the backend's cap)
MAX_GROUP = 2000  # samples per group what-if (the backend's cap)
THUMBS = 24  # thumbnails of a selection shown; the rest are counted
MODE_PAIRS, MODE_FILTERS = 3, 5  # per failure mode: dominant confusions and shared filters listed
STATE = QueryState(
    Field("colour", "pair", choice(mf.COLOURINGS)),
    Field("mode", None, integer(0)),
)
EMPTY = {"ids": [], "x": [], "y": [], "cluster": [], "label": [], "pred": []}  # drawn until the maps arrive
TITLES = {"saliency": "Saliency space (parameter-saliency profiles)", "feature": "Feature space (penultimate features)"}


def mistakes(count: int) -> str:
    return f"{count:,} mistake{'' if count == 1 else 's'}"


def graph_id(space: str) -> str:
    return f"{PREFIX}-{space}"


def intro(methods: dict) -> html.Div:
    how = ", ".join(sorted({str(m) for m in methods.values() if m})) or "method not recorded"
    return html.Div([
        html.P(["Every misclassified sample is one dot. ", html.B("Saliency space"), " (left) places mistakes by "
                "their parameter-saliency profile, i.e. which filters the loss blames, so mistakes that sit together "
                "go wrong for the same internal reason. ", html.B("Feature space"), " (right) places the same "
                "mistakes by the model's penultimate features, i.e. what the image looks like to the model."]),
        html.P([f"Positions are a 2-D embedding ({how}): only nearness means something, not the axes or the "
                "distances between far groups. Colour by the confusion (true → predicted class) or by failure mode (clusters of the "
                "mistakes in saliency space, listed below). Hover a dot for its image, click it to open the sample, "
                "and drag a lasso or a box over either map to select mistakes: the same mistakes light up in the "
                "other map, and the panel below shows them and the filters they share."], className="hint"),
    ], id=f"{PREFIX}-intro")


def mode_row(mode: dict, names, active: bool) -> html.Div:
    """One failure mode: its size, dominant confusions and most shared filters (each linking to its page)."""
    pairs = [html.Span(f"{class_name(names, c['true'])} → {class_name(names, c['pred'])} ({c['count']:,})",
                       className="chip chip-muted") for c in mode["confusions"][:MODE_PAIRS]]
    filters = [dcc.Link(filter_label(f), href=f"/filter/{f['filter']}", title=f"mean z {f['mean_z']:.2f}",
                        className="map-filter-link") for f in mode["top_filters"][:MODE_FILTERS]]
    return html.Div([
        html.Button(f"Mode {mode['cluster']} · {mistakes(mode['size'])}", id={"type": f"{PREFIX}-mode", "index": mode["cluster"]},
                    n_clicks=0, className=mode_button_class(active), title="highlight this mode's mistakes"),
        html.Div(pairs, className="mode-row"),
        html.Div([html.Span("shared filters: ", className="hint"), *_joined(filters)], className="map-mode-filters"),
    ], className="map-mode", id=f"{PREFIX}-mode-{mode['cluster']}")


def mode_button_class(active: bool) -> str:
    return "link-button map-mode-button" + (" is-active" if active else "")


def _joined(items: list) -> list:
    out = []
    for i, item in enumerate(items):
        out.extend([", "] if i else [])
        out.append(item)
    return out


@page
def layout(client: BackendClient, info: dict, **query) -> html.Div:
    state = STATE.parse(query)
    names = list(info.get("classes", []))
    try:
        modes = client.failure_modes()
    except BackendError as exc:
        return html.Div([card("Mistake map", error_alert(exc, "the failure modes"), level=1)], className="page page-map")
    chosen = next((m for m in modes if m["cluster"] == state["mode"]), None)
    selection = {"ids": chosen["sample_ids"], "source": "mode", "mode": chosen["cluster"]} if chosen else None
    controls = html.Div([
        html.Div([html.Label("Colour by", id=f"{PREFIX}-colour-label"),
                  dcc.RadioItems(id=f"{PREFIX}-colour", value=state["colour"], inline=True, className="radio-row",
                                 options=[{"label": "confusion (true → predicted)", "value": "pair"},
                                          {"label": "failure mode", "value": "mode"}])], className="control"),
        html.Button("Clear selection", id=f"{PREFIX}-clear", n_clicks=0, className="btn btn-small"),
    ], className="controls-row")
    # no loading wrapper: it would hide the graph (and drop a lasso just drawn) while a highlight is applied
    maps = [html.Div(card(TITLES[space], html.Div([dcc.Graph(
        id=graph_id(space), figure=mf.map_figure(mf.MapPoints.from_answer(EMPTY), "pair", names, title="loading…"),
        config={"displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["autoScale2d"]},
        clear_on_unhover=True, className="clickable-graph"),
        # the tooltip's box is relative to the graph, so both sit in one positioned box
        dcc.Tooltip(id=f"{graph_id(space)}-tip", children=[
            html.Img(id=f"{graph_id(space)}-tip-img", className="map-tip-img", alt="the hovered mistake"),
            html.Div(id=f"{graph_id(space)}-tip-text", className="thumb-id")], direction="right")],
        className="map-graph-box")), className="col-6 map-col") for space in SPACES]
    mode_list = html.Div([mode_row(m, names, chosen is m) for m in modes] or [alert("No failure modes.", "info")],
                         id=f"{PREFIX}-modes", className="map-modes")
    return html.Div([
        dcc.Location(id=f"{PREFIX}-location", refresh=False),
        dcc.Location(id=f"{PREFIX}-nav", refresh="callback-nav"),
        dcc.Store(id=SELECTION, data=selection),
        card("Mistake map", html.Div(id=f"{PREFIX}-intro-box"), controls, level=1,
             extra=html.Span(id=f"{PREFIX}-count", className="chip chip-muted")),
        html.Div(maps, className="row row-tight"),
        html.Div([html.Div([card("Selection", dcc.Loading(html.Div(id=f"{PREFIX}-selection-panel"), type="dot")),
                            html.Div(id=f"{PREFIX}-fix-hint", className="hint"),
                            html.Div(group_fix.layout(PREFIX, fix_group(selection) or {"sample_ids": []}),
                                     id=f"{PREFIX}-fix-box", hidden=fix_group(selection) is None)],
                           className="col-7"),
                  html.Div(card(f"Failure modes ({len(modes)})", mode_list), className="col-5")],
                 className="row row-tight"),
    ], className="page page-map")


def fix_group(selection) -> dict | None:
    """The group routes' body for a selection: a failure mode by its number, a lasso by its ids (None: nothing
    selected, or more than a group what-if takes)."""
    if selection and selection.get("source") == "mode":
        return {"failure_mode": int(selection["mode"])}
    ids = selection_ids(selection)
    return {"sample_ids": sorted(set(ids))} if ids and len(set(ids)) <= MAX_GROUP else None


def fetch_maps(client: BackendClient) -> dict:
    """Both spaces' maps (``MapPoints`` and method), fetched side by side."""
    answers = client.parallel(*(lambda space=space: client.mistake_map(space) for space in SPACES))
    return {space: (mf.MapPoints.from_answer(a), a.get("method")) for space, a in zip(SPACES, answers)}


def selection_ids(selection) -> list[int] | None:
    return None if not selection else [int(i) for i in selection.get("ids") or []]


def spread(ids: np.ndarray, limit: int = MAX_SELECTION) -> np.ndarray:
    """At most ``limit`` of the sorted ``ids``, evenly spaced, for a selection larger than the backend takes."""
    if ids.size <= limit:
        return ids
    return ids[np.linspace(0, ids.size - 1, limit).round().astype(np.int64)]


def render_selection(client: BackendClient, selection, points: mf.MapPoints, names) -> html.Div:
    """The selected mistakes: what they are confused as, the filters they share, and their thumbnails."""
    ids = selection_ids(selection)
    if ids is None:
        return alert("Drag a lasso or a box over either map, or pick a failure mode, to see those mistakes and the "
                     "filters they share.", "info")
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    where = {"saliency": "in saliency space", "feature": "in feature space"}.get(selection.get("source"), "")
    title = (f"Failure mode {selection['mode']}: {mistakes(ids.size)}" if selection.get("source") == "mode"
             else f"{mistakes(ids.size)} selected {where}")
    if not ids.size:
        return html.Div([html.H4(title, id=f"{PREFIX}-selection-title"), alert("The selection holds no mistakes.", "info")])
    rows = np.flatnonzero(np.isin(points.ids, ids))
    pairs, counts = np.unique(np.stack([points.label[rows], points.pred[rows]], axis=1), axis=0, return_counts=True)
    top_pairs = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:5] if rows.size else []
    confusions = html.Div([html.Span(f"{class_name(names, pairs[i, 0])} → {class_name(names, pairs[i, 1])} "
                                     f"({counts[i]:,})", className="chip chip-muted") for i in top_pairs],
                          className="mode-row", id=f"{PREFIX}-selection-pairs")
    asked = spread(ids)
    try:
        shared = client.selection_filters(asked.tolist(), top=10)
    except BackendError as exc:
        filters = error_alert(exc, "the shared filters")
    else:
        note = (f"over {asked.size:,} of the {ids.size:,} selected, evenly spaced by id" if asked.size < ids.size
                else f"over the {ids.size:,} selected")
        filters = html.Div([
            html.P(f"Filters they share (highest mean standardized saliency {note}):", className="hint"),
            html.Ol([html.Li([dcc.Link(filter_label(f), href=f"/filter/{f['filter']}"),
                              html.Span(f"  mean z {f['mean_z']:.2f}", className="hint")])
                     for f in shared["top_filters"]], id=f"{PREFIX}-shared-filters"),
        ])
    shown = rows[np.argsort(points.ids[rows])][:THUMBS]
    thumbs = html.Div([thumbnail(Subject("samples", str(points.ids[r])), names, points.label[r], points.pred[r],
                                 id_prefix=f"{PREFIX}-thumb") for r in shown], className="strip", id=f"{PREFIX}-thumbs")
    more = ids.size - shown.size
    return html.Div([
        html.H4(title, id=f"{PREFIX}-selection-title"), confusions, filters,
        thumbs, html.P(f"… and {more:,} more (lowest ids shown)", className="hint") if more > 0 else None,
    ])


def figures_for(maps: dict, colour: str, names, selection) -> list:
    ids = selection_ids(selection)
    return [mf.map_figure(maps[space][0], colour, names, title=f"{mistakes(len(maps[space][0]))} · {maps[space][1]}",
                          selected=ids) for space in SPACES]


def selection_patch(points: mf.MapPoints, colour: str, names, ids, keep_outline: bool) -> Patch:
    """Highlights ``ids`` on an already drawn map without sending its points again. The map the lasso was
    drawn on gets the highlight too: Dash redraws a graph from its figure, which does not hold the browser's
    own selection. ``keep_outline``: leave the lasso drawn there; other maps lose theirs."""
    patch = Patch()
    for i, chosen in enumerate(mf.selected_points(points, mf.groups(points, colour, names), ids)):
        patch["data"][i]["selectedpoints"] = None if chosen is None else chosen.tolist()
    if not keep_outline:
        patch["layout"]["selections"] = []
    return patch


def url(colour: str, selection) -> str:
    mode = selection.get("mode") if selection and selection.get("source") == "mode" else None
    return STATE.build({"colour": colour, "mode": mode})


# A point's id is its trace's customdata at the point's index. Dash's event data cannot carry it (the figure
# holds the ids as a binary array), so these read it from the drawn graph.
POINT_ID_JS = """
    function pointIds(graph, points) {
        const gd = document.getElementById(graph).querySelector('.js-plotly-plot');
        const traces = {};
        for (const t of gd._fullData) { traces[t.index] = t.customdata; }
        return points.map(p => traces[p.curveNumber][p.pointIndex === undefined ? p.pointNumber : p.pointIndex]);
    }
"""

HOVER_JS = """function(hover) {
    const none = window.dash_clientside.no_update;
    if (!hover || !hover.points || !hover.points.length) { return [false, none, none, none]; }
    %s
    const graph = window.dash_clientside.callback_context.triggered[0].prop_id.split('.')[0];
    const id = pointIds(graph, hover.points.slice(0, 1))[0];
    return [true, hover.points[0].bbox, '/media/samples/' + id + '/image.png', '#' + id + ' · click to open'];
}""" % POINT_ID_JS

SELECT_JS = """function(saliency, feature) {
    const trig = (window.dash_clientside.callback_context.triggered || [])[0];
    if (!trig) { return window.dash_clientside.no_update; }
    const source = trig.prop_id.indexOf('map-saliency.') === 0 ? 'saliency' : 'feature';
    const data = source === 'saliency' ? saliency : feature;
    if (!data || !data.points) { return null; }
    // an empty selection is also what a redraw of the map reports; a double click (no selection) clears
    if (!data.points.length) { return window.dash_clientside.no_update; }
    %s
    const ids = Array.from(new Set(pointIds('map-' + source, data.points)));
    ids.sort((a, b) => a - b);
    return {ids: ids, source: source, mode: null};
}""" % POINT_ID_JS

CLICK_JS = """function(saliency, feature) {
    const trig = (window.dash_clientside.callback_context.triggered || [])[0];
    const graph = trig && trig.prop_id.split('.')[0];
    const data = trig && (graph === 'map-saliency' ? saliency : feature);
    if (!data || !data.points || !data.points.length) { return window.dash_clientside.no_update; }
    %s
    return '/sample/' + pointIds(graph, data.points.slice(0, 1))[0];
}""" % POINT_ID_JS


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/map", layout=layout, title="Mistake map")

    @app.callback(
        *(Output(graph_id(space), "figure") for space in SPACES),
        Output(f"{PREFIX}-intro-box", "children"),
        Output(f"{PREFIX}-count", "children"),
        Output(f"{PREFIX}-location", "search"),
        Input(f"{PREFIX}-colour", "value"),
        State(SELECTION, "data"),
    )
    def _draw(colour, selection):
        colour = colour if colour in mf.COLOURINGS else "pair"
        try:
            names = list(client.info().get("classes", []))
            maps = fetch_maps(client)
        except BackendError as exc:
            message = error_alert(exc, "the map of the mistakes")
            return no_update, no_update, message, "", no_update
        methods = {space: method for space, (_, method) in maps.items()}
        return (*figures_for(maps, colour, names, selection), intro(methods),
                mistakes(len(maps['saliency'][0])), url(colour, selection))

    @app.callback(
        Output(f"{PREFIX}-selection-panel", "children"),
        *(Output(graph_id(space), "figure", allow_duplicate=True) for space in SPACES),
        Output(f"{PREFIX}-location", "search", allow_duplicate=True),
        Output({"type": f"{PREFIX}-mode", "index": ALL}, "className"),
        Input(SELECTION, "data"),
        State(f"{PREFIX}-colour", "value"),
        State({"type": f"{PREFIX}-mode", "index": ALL}, "id"),
        prevent_initial_call="initial_duplicate",
    )
    def _select(selection, colour, mode_ids):
        colour = colour if colour in mf.COLOURINGS else "pair"
        active = selection.get("mode") if selection and selection.get("source") == "mode" else None
        classes = [mode_button_class(m["index"] == active) for m in mode_ids]
        try:
            names = list(client.info().get("classes", []))
            maps = fetch_maps(client)
        except BackendError as exc:
            return error_alert(exc, "the map of the mistakes"), no_update, no_update, no_update, classes
        panel = render_selection(client, selection, maps["saliency"][0], names)
        if ctx.triggered_id is None:  # the page's first draw already shows its selection
            return panel, no_update, no_update, no_update, classes
        source = selection.get("source") if selection else None
        patches = [selection_patch(maps[space][0], colour, names, selection_ids(selection), keep_outline=space == source)
                   for space in SPACES]
        return panel, *patches, url(colour, selection), classes

    group_fix.register(app, client, PREFIX)
    fix = group_fix.ids(PREFIX)

    @app.callback(
        Output(fix["group"], "data"), Output(fix["answer"], "data", allow_duplicate=True),
        Output(f"{PREFIX}-fix-box", "hidden"), Output(f"{PREFIX}-fix-hint", "children"),
        Input(SELECTION, "data"), prevent_initial_call=True,
    )
    def _fix_group(selection):
        group = fix_group(selection)
        if group is not None:
            return group, None, False, None
        too_many = bool(selection_ids(selection))
        return no_update, None, True, (f"A fix can be tried on at most {MAX_GROUP:,} mistakes: select fewer, or "
                                        "pick a failure mode." if too_many else None)

    @app.callback(
        Output(SELECTION, "data", allow_duplicate=True),
        Input({"type": f"{PREFIX}-mode", "index": ALL}, "n_clicks"),
        Input(f"{PREFIX}-clear", "n_clicks"),
        prevent_initial_call=True,
    )
    def _pick(_clicks, _clear):
        trigger = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update
        if trigger == f"{PREFIX}-clear":
            return None
        try:
            modes = client.failure_modes()
        except BackendError:
            return no_update
        mode = next((m for m in modes if m["cluster"] == trigger["index"]), None)
        return None if mode is None else {"ids": mode["sample_ids"], "source": "mode", "mode": mode["cluster"]}

    app.clientside_callback(SELECT_JS, Output(SELECTION, "data", allow_duplicate=True),
                            *(Input(graph_id(space), "selectedData") for space in SPACES), prevent_initial_call=True)
    app.clientside_callback(CLICK_JS, Output(f"{PREFIX}-nav", "href"),
                            *(Input(graph_id(space), "clickData") for space in SPACES), prevent_initial_call=True)
    for space in SPACES:
        tip = f"{graph_id(space)}-tip"
        app.clientside_callback(HOVER_JS, Output(tip, "show"), Output(tip, "bbox"), Output(f"{tip}-img", "src"),
                                Output(f"{tip}-text", "children"), Input(graph_id(space), "hoverData"),
                                prevent_initial_call=True)
