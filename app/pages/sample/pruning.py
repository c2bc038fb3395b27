"""Cards: live pruning (how many filters, chosen how, or ticked by hand) and the prediction with those filters
switched off, for the sample and for its saliency neighbours."""

from __future__ import annotations

import json

from dash import Input, Output, State, dcc, html, no_update

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import card, class_name, error_alert, lone_trigger, media_url, verdict_class
from app.figures import filter_name
from app.pages.sample.view import MAX_PRUNE, View, sid, subject_of

CHECKLIST = sid("prune-check")
TOP_K = sid("prune-k")
MODE = sid("prune-mode")
DRAW = sid("prune-draw")
EXTRA = sid("prune-extra")  # switched-off filters that are not among the salient ones listed above
# {"filters": what is switched off, "seed", "hand": ticked by hand} as JSON, for the URL. Not a dcc.Store: a
# Store that is a callback's input fires that callback when a page opens, one more round trip each time
PRUNED = sid("pruned")


def layout(view: View):
    state = view.state
    checked = checked_filters(view)
    controls = card(
        "Live pruning",
        html.Div([html.Label("Prune top-k filters", htmlFor=TOP_K),
                  dcc.Slider(id=TOP_K, min=0, max=MAX_PRUNE, step=1, value=state["prune_top_k"],
                             marks={v: str(v) for v in (0, 5, 10, 15, 20)}, updatemode="mouseup",
                             tooltip={"placement": "bottom"}, allow_direct_input=False)], className="control"),
        html.Div([html.Label("chosen by"),
                  html.Div([dcc.RadioItems(id=MODE, value=state["prune_mode"], inline=True, className="radio-row",
                                           options=[{"label": "most salient", "value": "salient"},
                                                    {"label": "random", "value": "random"},
                                                    {"label": "least salient", "value": "least"}]),
                            html.Button("draw again", id=DRAW, n_clicks=0, className=draw_class(state["prune_mode"]),
                                        title="switch off another random set of filters")],
                           className="mode-row")], className="control"),
        html.Div([html.Label("or tick the filters to switch off"),
                  dcc.Checklist(id=CHECKLIST, options=check_options(view.filters, view.layers),
                                value=checked, className=checklist_class(state["prune_mode"]),
                                inputClassName="filter-check-input"),
                  html.Div(extra_checks(view.filters, view.layers, checked, view.z), id=EXTRA)],
                 className="control"),
        html.Data(id=PRUNED, value=json.dumps({"filters": checked, "seed": state["seed"],
                                               "hand": state["off"] is not None})),
        className="col-5",
    )
    prediction = card("Prediction with those filters off",
                      dcc.Loading(html.Div(id=sid("prediction")), type="dot", delay_show=150), className="col-7")
    return html.Div([controls, prediction], className="row")


def checked_filters(view: View) -> list[int]:
    """The boxes a link ticks: its ``off`` list, else the top ``prune`` filters in "most salient" mode (the
    other modes' filters come with the backend's answer)."""
    if view.state["prune_mode"] != "salient":
        return []
    if view.state["off"] is not None:
        return list(view.state["off"])[:MAX_PRUNE]
    return salient_checks(view.filters, view.state["prune_top_k"])


def salient_checks(filters, prune_top_k) -> list[int]:
    """The ids of the ``prune_top_k`` most salient filters (what the slider ticks in "most salient" mode)."""
    return [int(f["filter"]) for f in (filters or [])[: int(prune_top_k or 0)]]


def check_options(filters, layers) -> list[dict]:
    """A box per salient filter. Names lose the prefix they share (the full name is on hover), so they stay
    distinguishable in a narrow column."""
    names = [filter_name(layers, int(f["filter"])) for f in filters or []]
    return [{"label": check_label(name, short, int(f["filter"]), float(f["z"])), "value": int(f["filter"])}
            for f, name, short in zip(filters or [], names, figures.drop_common_prefix(names))]


def check_label(name: str, short: str, filter_id: int, z: float | None) -> html.Span:
    return html.Span([html.Span(short, className="check-name", title=f"{name} (filter id {filter_id})"),
                      html.Span("z ?" if z is None else f"z {z:.1f}", className="check-z")], className="check-label")


def extra_checks(filters, layers, checked, z=None) -> list:
    """Ticked (read-only) boxes for the switched-off filters that are not among the salient ones (a random or
    least salient draw), so the list shows exactly what is off. (A Dash 4 Checklist whose options a
    callback replaces resets its sibling controls, hence a separate list.)"""
    shown = {int(f["filter"]) for f in filters or []}
    extra = [int(c) for c in checked or [] if int(c) not in shown]
    names = [filter_name(layers, i) for i in extra]
    if not extra:
        return []
    options = [{"label": check_label(name, name, i, None if z is None or not 0 <= i < len(z) else float(z[i])),
                "value": i, "disabled": True} for i, name in zip(extra, names)]
    return [html.Div("also switched off (not among the most salient):", className="hint"),
            dcc.Checklist(options=options, value=extra, className="filter-checklist is-disabled",
                          inputClassName="filter-check-input")]


def draw_class(mode: str) -> str:
    """"Draw again" only means something for random filters."""
    return "btn btn-small" + ("" if mode == "random" else " is-hidden")


def checklist_class(mode: str) -> str:
    """The checkboxes only choose filters in "most salient" mode; other modes grey them out."""
    return "filter-checklist" + ("" if mode == "salient" else " is-disabled")


def pruning(client: BackendClient, subject: Subject, trigger: str | None, checked, prune_top_k, mode, filters,
            seed: int = 0, layers=()):
    """One callback for all pruning controls -> (ticked salient filters, the other switched-off ones, checklist
    class, slider value, what is switched off, prediction panel).

    "Most salient": moving the slider (or switching to that mode) ticks the top-k filters, ticking boxes by
    hand prunes exactly those and the slider follows their count. Random/least: the backend chooses
    ``prune_top_k`` filters ("draw again" takes the next seed) and the boxes show the ones it switched off."""
    checked = [int(c) for c in checked or []]
    if trigger == DRAW:
        seed += 1
    if mode == "salient":
        if trigger in (TOP_K, MODE):
            checked = salient_checks(filters, prune_top_k)
        elif trigger == CHECKLIST:
            prune_top_k = len(checked)
        result, panel = prediction_panel(client, subject, checked, prune_top_k, mode, seed, layers)
    else:
        result, panel = prediction_panel(client, subject, checked, prune_top_k, mode, seed, layers)
        checked = [int(f) for f in result["filters"]] if result else []
    hand = mode == "salient" and checked != salient_checks(filters, len(checked))
    shown = {int(f["filter"]) for f in filters or []}
    z = None
    if any(c not in shown for c in checked):
        try:
            z = client.profile(subject)["z"]
        except BackendError:
            z = None
    return ([c for c in checked if c in shown], extra_checks(filters, layers, checked, z), checklist_class(mode),
            prune_top_k, {"filters": checked, "seed": seed, "hand": hand}, panel)


def _flip_label(label, before: int, after: int) -> tuple[str, str]:
    if before == after:
        return "unchanged", "flip-none"
    if label is not None and after == int(label):
        return "fixed ✔", "flip-fixed"
    if label is not None and before == int(label):
        return "broken ✘", "flip-broken"
    return "changed", "flip-changed"


def neighbour_rows(names, neighbours: list[dict]) -> tuple[list[html.Tr], int]:
    """A table row per neighbour (thumbnail, true class, prediction before and after, what changed), and how
    many of them the change fixed."""
    rows, fixed = [], 0
    for nb in neighbours:
        nb_b, nb_a = int(nb["before"]["pred"]), int(nb["after"]["pred"])
        text, cls = _flip_label(nb.get("label"), nb_b, nb_a)
        fixed += cls == "flip-fixed"
        rows.append(html.Tr([
            html.Td(dcc.Link(html.Img(src=media_url(Subject("samples", str(nb["id"]))), className="mini-img",
                                      alt=f"sample {nb['id']}"), href=f"/sample/{nb['id']}")),
            html.Td(class_name(names, nb.get("label"))),
            html.Td(class_name(names, nb_b), className=f"pred-{verdict_class(nb.get('label'), nb_b)}"),
            html.Td(class_name(names, nb_a), className=f"pred-{verdict_class(nb.get('label'), nb_a)}"),
            html.Td(html.Span(text, className=f"flip {cls}")),
        ], className=cls))
    return rows, fixed


def prediction_panel(client: BackendClient, subject: Subject, checked, prune_top_k: int, mode: str, seed: int = 0,
                     layers=()):
    """-> (the backend's answer or None, the panel): the sample's prediction, and after pruning the new one,
    which filters were switched off, and its neighbours' predictions (which ones flip)."""
    try:
        detail = client.sample(subject)
        names = detail.get("class_names") or client.info().get("classes", [])
        label = detail.get("label")
        result = None
        if mode == "salient" and checked:
            result = client.prune(subject, filters=[int(c) for c in checked])
        elif mode != "salient" and prune_top_k:
            result = client.prune(subject, top_k=int(prune_top_k), mode=mode, seed=seed)
    except BackendError as exc:
        return None, error_alert(exc, "the pruned prediction")
    before = detail["probs"]
    if result is None:
        fig = figures.probability_figure(names, before, None, label)
        return None, [html.Div("No filters pruned: tick filters or move the slider.", className="prune-summary"),
                      dcc.Graph(figure=fig, config={"displayModeBar": False}, id=sid("prob-graph"))]
    b_pred, a_pred = int(result["before"]["pred"]), int(result["after"]["pred"])
    flip, flip_class = _flip_label(label, b_pred, a_pred)
    off = [int(f) for f in result.get("filters", checked or [])]
    n = len(off)
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
        id=sid("prune-summary"),
    )
    which = html.Div(["switched off: ", ", ".join(filter_name(layers, f) for f in off)], className="hint",
                      id=sid("pruned-list"))
    fig = figures.probability_figure(names, result["before"]["probs"], result["after"]["probs"], label)
    rows, fixed = neighbour_rows(names, result.get("neighbors", []))
    table = html.Table([html.Thead(html.Tr([html.Th("sample"), html.Th("true"), html.Th("before"), html.Th("after"),
                                            html.Th("change")])), html.Tbody(rows)], className="flip-table") \
        if rows else None
    neighbours = html.Details([html.Summary(f"Saliency neighbours under the same pruning: {fixed} of {len(rows)} "
                                            f"flip to correct"), table], open=True, className="flip-details") \
        if rows else None
    return result, [summary, which, dcc.Graph(figure=fig, config={"displayModeBar": False}, id=sid("prob-graph")),
                    neighbours]


def register(app, client: BackendClient) -> None:
    @app.callback(Output(CHECKLIST, "value"), Output(EXTRA, "children"), Output(CHECKLIST, "className"),
                  Output(TOP_K, "value"), Output(PRUNED, "value"), Output(sid("prediction"), "children"),
                  Input(CHECKLIST, "value"), Input(TOP_K, "value"), Input(MODE, "value"), Input(DRAW, "n_clicks"),
                  State(PRUNED, "value"), State(sid("subject"), "data"), State(sid("filters"), "data"))
    def _pruning(checked, prune_top_k, mode, _draw, pruned, subject, filters):
        try:
            layers = figures.parse_layers(client.info().get("layers"))
        except BackendError:
            layers = []  # names fall back to global ids; the panel says what failed
        before = json.loads(pruned or "{}")
        ticked, extra, cls, k, now, panel = pruning(client, subject_of(subject), lone_trigger(), checked, prune_top_k,
                                                    mode, filters, int(before.get("seed") or 0), layers)
        # the slider and this value feed the URL callback: unchanged, they must not fire it (a round trip per
        # page open)
        return (ticked, extra, cls, no_update if k == prune_top_k else k,
                no_update if now == before else json.dumps(now), panel)

    app.clientside_callback("function(mode) { return mode === 'random' ? '%s' : '%s'; }"
                            % (draw_class("random"), draw_class("salient")), Output(DRAW, "className"),
                            Input(MODE, "value"))
