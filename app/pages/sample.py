"""Sample view, for a dataset sample (``/sample/<id>``) or an upload (``/upload/<id>``): the image and its
input-space saliency, the most salient filters, saliency-space neighbours and live pruning.

The URL query mirrors the controls (``?top_k=10&boost=100&layers=2:5&space=feature&prune=3&mode=salient``),
so every state of the page is a link that can be shared.
"""

from __future__ import annotations

import base64
import math
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlencode

import numpy as np
from dash import Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from app import figures
from app.client import BackendClient, BackendError, Ref
from app.components import alert, card, class_name, error_alert, media_url, thumbnail, verdict_class

PREFIX = "sample"
TOP_FILTERS = 20
MAX_TOP_K = 50
MAX_PRUNE = 20
NEIGHBORS = 10
BOOSTS = [1, 3, 10, 30, 100, 300, 1000]
FILTER_SEARCH_CANDIDATES = 40  # mistakes examined when looking for others sharing a salient filter
FILTER_RANK = 10  # "among the most salient filters" = within this many


def parse_query(search: str | None, num_layers: int) -> dict:
    """URL query -> control state, clamped to valid values (a hand-edited link never breaks the page)."""
    query = parse_qs((search or "").lstrip("?"))

    def one(key, cast, default):
        try:
            return cast(query[key][0])
        except (KeyError, IndexError, ValueError):
            return default

    layers = [0, num_layers]
    text = one("layers", str, "")
    if ":" in text:
        try:
            start, stop = (int(v) for v in text.split(":", 1))
            if 0 <= start < stop <= num_layers:
                layers = [start, stop]
        except ValueError:
            pass
    boost = one("boost", float, 100.0)
    mode = one("mode", str, "salient")
    space = one("space", str, "saliency")
    return {
        "top_k": min(max(one("top_k", int, 10), 1), MAX_TOP_K),
        "boost": min(BOOSTS, key=lambda b: abs(math.log(b) - math.log(boost))) if boost > 0 else 100,
        "layers": layers,
        "space": space if space in ("saliency", "feature") else "saliency",
        "mistakes_only": one("mistakes", str, "0") == "1",
        "prune": min(max(one("prune", int, 0), 0), MAX_PRUNE),
        "mode": mode if mode in ("salient", "random", "least") else "salient",
    }


def build_query(state: dict, num_layers: int) -> str:
    """Control state -> URL query; defaults are left out."""
    query: dict = {"top_k": state["top_k"]}
    if state["boost"] != 100:
        query["boost"] = state["boost"]
    if list(state["layers"]) != [0, num_layers]:
        query["layers"] = f"{state['layers'][0]}:{state['layers'][1]}"
    if state["space"] != "saliency":
        query["space"] = state["space"]
    if state["mistakes_only"]:
        query["mistakes"] = 1
    if state["prune"]:
        query["prune"] = state["prune"]
    if state["mode"] != "salient":
        query["mode"] = state["mode"]
    return "?" + urlencode(query, safe=":")


def layer_range(value, num_layers: int) -> tuple[int, int] | None:
    """The range slider's value as the backend's ``layers`` (None: all layers)."""
    if not value or len(value) != 2:
        return None
    start, stop = int(value[0]), int(value[1])
    if start == 0 and stop == num_layers:
        return None
    return (start, stop) if 0 <= start < stop <= num_layers else None


def describe_layers(value, layers: list[tuple[str, int, int]]) -> str:
    rng = layer_range(value, len(layers))
    if rng is None:
        return f"all {len(layers)} layers"
    first, last = figures.short_layer(layers[rng[0]][0]), figures.short_layer(layers[rng[1] - 1][0])
    return f"layers {rng[0] + 1}–{rng[1]} of {len(layers)}: {first} … {last}" if rng[1] - rng[0] > 1 else \
        f"layer {rng[0] + 1} of {len(layers)}: {first}"


def _slider_marks(num_layers: int) -> dict:
    step = max(1, math.ceil(num_layers / 8))
    marks = {i: str(i) for i in range(0, num_layers + 1, step)}
    marks[num_layers] = str(num_layers)
    return marks


def layout(client: BackendClient, info: dict, ref: Ref, search: str | None) -> html.Div:
    """The page, with the cheap parts (header, salient filters, profile) already filled in so that only the
    expensive views (input saliency, neighbours, pruning) wait for a callback."""
    back = dcc.Link("‹ Mistakes" if ref.kind == "samples" else "‹ Upload another image",
                    href="/mistakes" if ref.kind == "samples" else "/upload", className="back-link",
                    id=f"{PREFIX}-back")
    layers = figures.parse_layers(info.get("layers"))
    num_layers = len(layers)
    state = parse_query(search, num_layers)
    try:
        detail = client.sample(ref)
    except BackendError as exc:
        return html.Div([html.Div([back], className="page-title"), missing_message(exc, ref)], className="page")
    # the map is the slowest view: start it now, while the browser draws the page that will ask for it
    client.prefetch_input_saliency(ref, state["top_k"], state["boost"])
    filters, profile_fig, options = load_filters(client, ref)
    checked = salient_checks(filters, state["prune"]) if state["mode"] == "salient" else []
    images = card(
        "Image and input-space saliency",
        html.Div(
            [
                html.Figure([html.Img(src=media_url(ref), id=f"{PREFIX}-image", className="big-img", alt="input image"),
                             html.Figcaption("input")]),
                html.Figure([dcc.Loading(html.Div(id=f"{PREFIX}-overlay", className="big-img-box"), type="circle",
                                         delay_show=150),
                             html.Figcaption("pixels that drive the salient filters")]),
            ],
            className="image-pair",
        ),
        html.Div(
            [
                html.Div([html.Label("top_k salient filters boosted"),
                          dcc.Slider(id=f"{PREFIX}-topk", min=1, max=MAX_TOP_K, step=1, value=state["top_k"],
                                     marks={v: str(v) for v in (1, 10, 20, 30, 40, 50)}, updatemode="mouseup",
                                     tooltip={"placement": "bottom"}, allow_direct_input=False)], className="control"),
                html.Div([html.Label("boost factor"),
                          dcc.Slider(id=f"{PREFIX}-boost", min=0, max=len(BOOSTS) - 1, step=1,
                                     value=BOOSTS.index(state["boost"]),
                                     marks={i: str(b) for i, b in enumerate(BOOSTS)}, updatemode="mouseup",
                                     allow_direct_input=False)], className="control"),
            ],
            className="controls-stack",
        ),
        html.P("The map shows which pixels, if changed, would most move this image's saliency profile towards "
               "one where its top_k filters are boosted: the pixels that make those filters salient.",
               className="hint"),
        className="col-5",
    )
    filters_card = card(
        "Most salient filters",
        dcc.Graph(id=f"{PREFIX}-filters-graph", config={"displayModeBar": False},
                  figure=filters_figure(filters, checked), className="clickable-graph"),
        extra=html.Span("click a bar: other mistakes with that filter", className="hint"),
        className="col-7",
    )
    pruning = card(
        "Live pruning",
        html.Div([html.Label("Prune top-k filters"),
                  dcc.Slider(id=f"{PREFIX}-prune-k", min=0, max=MAX_PRUNE, step=1, value=state["prune"],
                             marks={v: str(v) for v in (0, 5, 10, 15, 20)}, updatemode="mouseup",
                             tooltip={"placement": "bottom"}, allow_direct_input=False)], className="control"),
        html.Div([html.Label("chosen by"),
                  dcc.RadioItems(id=f"{PREFIX}-prune-mode", value=state["mode"], inline=True, className="radio-row",
                                 options=[{"label": "most salient", "value": "salient"},
                                          {"label": "random", "value": "random"},
                                          {"label": "least salient", "value": "least"}])], className="control"),
        html.Div([html.Label("or tick the filters to switch off"),
                  dcc.Checklist(id=f"{PREFIX}-prune-check", options=options, value=checked,
                                className=checklist_class(state["mode"]), inputClassName="filter-check-input")],
                 className="control"),
        className="col-5",
    )
    prediction = card("Prediction with those filters off",
                      dcc.Loading(html.Div(id=f"{PREFIX}-prediction"), type="dot", delay_show=150),
                      className="col-7")
    profile_card = card(
        "Full saliency profile",
        dcc.Graph(id=f"{PREFIX}-profile-graph", config={"displaylogo": False}, figure=profile_fig),
        html.Div(id=f"{PREFIX}-filter-mistakes", className="filter-mistakes"),
        extra=html.Span("filters in model order, layers shallow → deep; red dots: the top 10", className="hint"),
    )
    neighbors_card = card(
        "Nearest neighbours",
        html.Div(
            [
                html.Div([html.Label("Layer range"),
                          dcc.RangeSlider(id=f"{PREFIX}-layers", min=0, max=num_layers, step=1,
                                          value=state["layers"], marks=_slider_marks(num_layers), allowCross=False,
                                          pushable=1, updatemode="mouseup", allow_direct_input=False),
                          html.Div(describe_layers(state["layers"], layers), id=f"{PREFIX}-layers-label",
                                   className="hint")], className="control control-wide"),
                html.Div([html.Label("Space"),
                          dcc.RadioItems(id=f"{PREFIX}-space", value=state["space"], inline=True, className="radio-row",
                                         options=[{"label": "parameter saliency", "value": "saliency"},
                                                  {"label": "features", "value": "feature"}])], className="control"),
                html.Div([html.Label("Filter"),
                          dcc.Checklist(id=f"{PREFIX}-mistakes-only", value=["1"] if state["mistakes_only"] else [],
                                        options=[{"label": "mistakes only", "value": "1"}], className="radio-row")],
                         className="control"),
            ],
            className="controls-row",
        ),
        dcc.Loading(html.Div(id=f"{PREFIX}-neighbors", className="strip"), type="dot", delay_show=150),
        extra=html.Span([html.Span("same", className="legend-same"), " the same confusion as this sample · ",
                         html.Span("reversed", className="legend-reversed"), " the reverse confusion"],
                        className="hint"),
    )
    return html.Div(
        [
            dcc.Location(id=f"{PREFIX}-location", refresh=False),
            dcc.Store(id=f"{PREFIX}-ref", data={"kind": ref.kind, "id": ref.id}),
            dcc.Store(id=f"{PREFIX}-filters", data=filters),
            html.Div([back, html.Div(header(detail, detail.get("class_names") or info.get("classes", []), ref),
                                     id=f"{PREFIX}-header", className="sample-header")],
                     className="page-title"),
            html.Div([images, filters_card], className="row"),
            html.Div([pruning, prediction], className="row"),
            profile_card,
            neighbors_card,
        ],
        className="page page-sample",
    )


def _ref(data: dict) -> Ref:
    return Ref(data["kind"], str(data["id"]))


def missing_message(exc: BackendError, ref: Ref) -> html.Div:
    if exc.status == 404 and ref.kind == "uploads":
        return alert("This upload is no longer on the server (uploads expire). Please upload the image again.")
    return error_alert(exc, f"{'upload' if ref.kind == 'uploads' else 'sample'} {ref.id}")


def header(detail: dict, names, ref: Ref) -> list:
    """Title, verdict, true and predicted class (with confidence) and loss of a sample or upload."""
    label, pred = detail.get("label"), int(detail["pred"])
    confidence = float(detail["probs"][pred])
    title = f"Sample #{ref.id}" if ref.kind == "samples" else "Uploaded image"
    if label is None:
        verdict = html.Span("no true label given", className="chip chip-muted")
    elif int(label) == pred:
        verdict = html.Span("correct", className="chip chip-correct")
    else:
        verdict = html.Span("misclassified", className="chip chip-wrong")
    parts = [html.H2(title), verdict]
    if label is not None:
        parts.append(html.Span(["true ", html.B(class_name(names, label))], className="chip"))
    parts.append(html.Span(["predicted ", html.B(class_name(names, pred)), f" ({confidence:.0%})"],
                           className=f"chip pred-{verdict_class(label, pred) if label is not None else 'muted'}"))
    if detail.get("loss") is not None:
        parts.append(html.Span(f"loss {float(detail['loss']):.3f}", className="chip chip-muted"))
    return parts


def overlay(client: BackendClient, ref: Ref, top_k: int, boost_index: int):
    boost = BOOSTS[int(boost_index)] if boost_index is not None else 100
    try:
        png = client.input_saliency_png(ref, top_k=int(top_k or 10), boost=float(boost))
    except BackendError as exc:
        return error_alert(exc, "the input-space saliency map")
    return html.Img(src="data:image/png;base64," + base64.b64encode(png).decode("ascii"), className="big-img",
                    id=f"{PREFIX}-overlay-img", alt=f"input-space saliency, top_k={top_k}, boost={boost}")


def load_filters(client: BackendClient, ref: Ref):
    """(filters store, profile figure, checklist options) for a sample."""
    try:
        filters, profile = client.parallel(lambda: client.filters(ref, top=TOP_FILTERS), lambda: client.profile(ref))
    except BackendError as exc:
        return None, figures.empty_figure(f"Could not load the profile: {exc.message}", 260), []
    layers = figures.parse_layers(profile.get("layers") or client.info().get("layers"))
    marked = [int(f["filter"]) for f in filters[:10]]
    fig = figures.profile_figure(np.asarray(profile["z"], dtype=float), layers, marked)
    options = [{"label": html.Span([html.Span(figures.filter_label(f), className="check-name",
                                              title=f"{figures.filter_label(f)} (filter id {f['filter']})"),
                                    html.Span(f"z {float(f['z']):.1f}", className="check-z")], className="check-label"),
                "value": int(f["filter"])} for f in filters]
    return filters, fig, options


def filters_figure(filters, checked):
    if filters is None:
        return figures.empty_figure("Could not load the salient filters.")
    return figures.top_filters_figure(filters, checked or [])


def salient_checks(filters, prune_k) -> list[int]:
    """The ids of the ``prune_k`` most salient filters (what the slider ticks in "most salient" mode)."""
    return [int(f["filter"]) for f in (filters or [])[: int(prune_k or 0)]]


def checklist_class(mode: str) -> str:
    """The checkboxes only choose filters in "most salient" mode; other modes grey them out."""
    return "filter-checklist" + ("" if mode == "salient" else " is-disabled")


def pruning(client: BackendClient, ref: Ref, trigger: str | None, checked, prune_k, mode, filters):
    """One callback for all pruning controls -> (ticked filters, checklist class, prediction panel).

    In "most salient" mode moving the slider (or switching to that mode) ticks the top-k filters; ticking
    boxes by hand prunes exactly those. Random/least modes prune ``prune_k`` filters chosen by the backend."""
    if mode == "salient" and trigger in (f"{PREFIX}-prune-k", f"{PREFIX}-prune-mode"):
        checked = salient_checks(filters, prune_k)
    return checked or [], checklist_class(mode), prediction_panel(client, ref, checked, prune_k, mode)


def _flip_label(names, label, before: int, after: int) -> tuple[str, str]:
    if before == after:
        return "unchanged", "flip-none"
    if label is not None and after == int(label):
        return "fixed ✔", "flip-fixed"
    if label is not None and before == int(label):
        return "broken ✘", "flip-broken"
    return "changed", "flip-changed"


def prediction_panel(client: BackendClient, ref: Ref, checked, prune_k: int, mode: str):
    """The sample's prediction, and after pruning the new one and its neighbours' (which ones flip)."""
    try:
        detail = client.sample(ref)
        names = detail.get("class_names") or client.info().get("classes", [])
        label = detail.get("label")
        result = None
        if mode == "salient" and checked:
            result = client.prune(ref, filters=[int(c) for c in checked])
        elif mode != "salient" and prune_k:
            result = client.prune(ref, top_k=int(prune_k), mode=mode)
    except BackendError as exc:
        return error_alert(exc, "the pruned prediction")
    before = detail["probs"]
    if result is None:
        fig = figures.probability_figure(names, before, None, label)
        return [html.Div("No filters pruned: tick filters or move the slider.", className="prune-summary"),
                dcc.Graph(figure=fig, config={"displayModeBar": False}, id=f"{PREFIX}-prob-graph")]
    b_pred, a_pred = int(result["before"]["pred"]), int(result["after"]["pred"])
    flip, flip_class = _flip_label(names, label, b_pred, a_pred)
    n = len(result.get("filters", checked or []))
    summary = html.Div(
        [
            html.Span(f"{n} filter{'s' if n != 1 else ''} off: ", className="prune-count"),
            html.Span(class_name(names, b_pred), className="strike" if a_pred != b_pred else ""),
            html.Span(" → "),
            html.B(class_name(names, a_pred)),
            html.Span(f" ({float(result['after']['probs'][a_pred]):.0%})"),
            html.Span(flip, className=f"flip {flip_class}"),
        ],
        className="prune-summary",
        id=f"{PREFIX}-prune-summary",
    )
    fig = figures.probability_figure(names, result["before"]["probs"], result["after"]["probs"], label)
    rows = []
    fixed = 0
    for nb in result.get("neighbors", []):
        nb_b, nb_a = int(nb["before"]["pred"]), int(nb["after"]["pred"])
        text, cls = _flip_label(names, nb.get("label"), nb_b, nb_a)
        fixed += cls == "flip-fixed"
        rows.append(html.Tr([
            html.Td(dcc.Link(html.Img(src=media_url(Ref("samples", str(nb["id"]))), className="mini-img"),
                             href=f"/sample/{nb['id']}")),
            html.Td(class_name(names, nb.get("label"))),
            html.Td(class_name(names, nb_b), className=f"pred-{verdict_class(nb.get('label'), nb_b)}"),
            html.Td(class_name(names, nb_a), className=f"pred-{verdict_class(nb.get('label'), nb_a)}"),
            html.Td(html.Span(text, className=f"flip {cls}")),
        ], className=cls))
    table = html.Table([html.Thead(html.Tr([html.Th(""), html.Th("true"), html.Th("before"), html.Th("after"),
                                            html.Th("")])), html.Tbody(rows)], className="flip-table") if rows else None
    neighbours = html.Details([html.Summary(f"Saliency neighbours under the same pruning: {fixed} of {len(rows)} "
                                            f"flip to correct"), table], open=True, className="flip-details") \
        if rows else None
    return [summary, dcc.Graph(figure=fig, config={"displayModeBar": False}, id=f"{PREFIX}-prob-graph"), neighbours]


def neighbor_strip(client: BackendClient, ref: Ref, layers_value, space: str, mistakes_only) -> list:
    try:
        info = client.info()
        detail = client.sample(ref)
        # a layer range selects filters, so it only applies to the parameter-saliency space
        rng = layer_range(layers_value, len(info.get("layers", []))) if space != "feature" else None
        hits = client.neighbors(ref, k=NEIGHBORS, layers=rng, space=space or "saliency",
                                misclassified_only=bool(mistakes_only))
    except BackendError as exc:
        return [error_alert(exc, "the neighbours")]
    names = detail.get("class_names") or info.get("classes", [])
    if not hits:
        return [alert("No neighbours found.", "info")]
    label, pred = detail.get("label"), int(detail["pred"])
    tiles = []
    for hit in hits:
        badge, extra = "", ""
        if label is not None and int(label) != pred:
            if int(hit["label"]) == int(label) and int(hit["pred"]) == pred:
                badge, extra = "same", "thumb-same"
            elif int(hit["label"]) == pred and int(hit["pred"]) == int(label):
                badge, extra = "reversed", "thumb-reversed"
        tiles.append(thumbnail(Ref("samples", str(hit["id"])), names, hit["label"], hit["pred"],
                               caption=f"sim {float(hit['score']):.2f}", badge=badge, extra_class=extra,
                               id_prefix=f"{PREFIX}-nb"))
    return tiles


def filter_of_click(click_data) -> int | None:
    """The filter id a click on the bar chart or the profile's marked points refers to."""
    try:
        point = click_data["points"][0]
        value = point.get("customdata", point.get("x"))
        return int(value[0] if isinstance(value, list) else value)
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def mistakes_with_filter(client: BackendClient, ref: Ref, filter_id: int):
    """Other mistakes that have ``filter_id`` among their ``FILTER_RANK`` most salient filters.

    The backend has no index from filters to samples, so the candidates are this sample's nearest mistakes
    in the saliency space of that filter's layer (the likeliest to share it), each checked exactly."""
    try:
        info = client.info()
        layers = figures.parse_layers(info.get("layers"))
        layer = next(i for i, (_, start, stop) in enumerate(layers) if start <= filter_id < stop)
        hits = client.neighbors(ref, k=FILTER_SEARCH_CANDIDATES, layers=(layer, layer + 1), space="saliency",
                                misclassified_only=True)
        names = info.get("classes", [])
        # the candidates' top filters are independent requests: ask for them side by side
        with ThreadPoolExecutor(max_workers=8) as pool:
            tops = list(pool.map(lambda hit: client.filters(Ref("samples", str(hit["id"])), top=FILTER_RANK), hits))
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
    tiles = [thumbnail(Ref("samples", str(hit["id"])), names, hit["label"], hit["pred"],
                       caption=f"rank {rank + 1}, z {z:.1f}", id_prefix=f"{PREFIX}-fm") for hit, rank, z in found]
    return html.Div([title, html.Div(tiles, className="strip")])


_RECOLOR_BARS = """function(checked, fig) {
    if (!fig || !fig.data || !fig.data.length || !Array.isArray(fig.data[0].customdata)) {
        return window.dash_clientside.no_update;
    }
    const on = new Set((checked || []).map(Number));
    const bar = Object.assign({}, fig.data[0]);
    bar.marker = Object.assign({}, bar.marker, {color: bar.customdata.map(f => on.has(Number(f)) ? '%s' : '%s')});
    return Object.assign({}, fig, {data: [bar].concat(fig.data.slice(1))});
}""" % (figures.WRONG, figures.ACCENT)


def register(app, client: BackendClient) -> None:
    ref_state = State(f"{PREFIX}-ref", "data")

    @app.callback(Output(f"{PREFIX}-overlay", "children"), Input(f"{PREFIX}-topk", "value"),
                  Input(f"{PREFIX}-boost", "value"), ref_state)
    def _overlay(top_k, boost_index, ref):
        return overlay(client, _ref(ref), top_k, boost_index)

    @app.callback(Output(f"{PREFIX}-prune-check", "value"), Output(f"{PREFIX}-prune-check", "className"),
                  Output(f"{PREFIX}-prediction", "children"), Input(f"{PREFIX}-prune-check", "value"),
                  Input(f"{PREFIX}-prune-k", "value"), Input(f"{PREFIX}-prune-mode", "value"), ref_state,
                  State(f"{PREFIX}-filters", "data"))
    def _pruning(checked, prune_k, mode, ref, filters):
        return pruning(client, _ref(ref), ctx.triggered_id, checked, prune_k, mode, filters)

    app.clientside_callback(
        "function(ref, search) { return ref.kind === 'uploads' ? '/upload' : '/mistakes' + (search || ''); }",
        Output(f"{PREFIX}-back", "href"), Input(f"{PREFIX}-ref", "data"), State("gallery-memory", "data"))

    # recolouring the ticked bars needs no server round trip
    app.clientside_callback(_RECOLOR_BARS, Output(f"{PREFIX}-filters-graph", "figure"),
                            Input(f"{PREFIX}-prune-check", "value"), State(f"{PREFIX}-filters-graph", "figure"),
                            prevent_initial_call=True)

    @app.callback(Output(f"{PREFIX}-neighbors", "children"), Output(f"{PREFIX}-layers-label", "children"),
                  Output(f"{PREFIX}-layers", "disabled"), Input(f"{PREFIX}-layers", "value"),
                  Input(f"{PREFIX}-space", "value"), Input(f"{PREFIX}-mistakes-only", "value"), ref_state)
    def _neighbors(layers_value, space, mistakes_only, ref):
        strip = neighbor_strip(client, _ref(ref), layers_value, space, mistakes_only)
        if space == "feature":
            return strip, "feature space: the layer range does not apply", True
        try:
            layers = figures.parse_layers(client.info().get("layers"))
        except BackendError:
            layers = []
        return strip, describe_layers(layers_value, layers) if layers else "", False

    @app.callback(Output(f"{PREFIX}-filter-mistakes", "children"), Input(f"{PREFIX}-filters-graph", "clickData"),
                  Input(f"{PREFIX}-profile-graph", "clickData"), ref_state, prevent_initial_call=True)
    def _filter_mistakes(bar_click, profile_click, ref):
        click = bar_click if ctx.triggered_id == f"{PREFIX}-filters-graph" else profile_click
        filter_id = filter_of_click(click)
        if filter_id is None:
            raise PreventUpdate
        return mistakes_with_filter(client, _ref(ref), filter_id)

    @app.callback(Output(f"{PREFIX}-location", "search"), Input(f"{PREFIX}-topk", "value"),
                  Input(f"{PREFIX}-boost", "value"), Input(f"{PREFIX}-layers", "value"),
                  Input(f"{PREFIX}-space", "value"), Input(f"{PREFIX}-mistakes-only", "value"),
                  Input(f"{PREFIX}-prune-k", "value"), Input(f"{PREFIX}-prune-mode", "value"),
                  prevent_initial_call=True)
    def _url(top_k, boost_index, layers_value, space, mistakes_only, prune_k, mode):
        num_layers = len(client.info().get("layers", []))
        state = {"top_k": top_k, "boost": BOOSTS[int(boost_index)], "layers": layers_value or [0, num_layers],
                 "space": space, "mistakes_only": bool(mistakes_only), "prune": prune_k or 0, "mode": mode}
        return build_query(state, num_layers)
