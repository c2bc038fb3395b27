"""Cards: live pruning (how many filters, chosen how, or ticked by hand) and the prediction with those filters
switched off, for the sample and for its saliency neighbours."""

from __future__ import annotations

from dash import Input, Output, State, ctx, dcc, html

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import card, class_name, error_alert, media_url, verdict_class
from app.pages.sample.view import MAX_PRUNE, View, sid, subject_of

CHECKLIST = sid("prune-check")
TOP_K = sid("prune-k")
MODE = sid("prune-mode")


def layout(view: View):
    state = view.state
    options = [{"label": html.Span([html.Span(figures.filter_label(f), className="check-name",
                                              title=f"{figures.filter_label(f)} (filter id {f['filter']})"),
                                    html.Span(f"z {float(f['z']):.1f}", className="check-z")], className="check-label"),
                "value": int(f["filter"])} for f in view.filters or []]
    controls = card(
        "Live pruning",
        html.Div([html.Label("Prune top-k filters"),
                  dcc.Slider(id=TOP_K, min=0, max=MAX_PRUNE, step=1, value=state["prune_top_k"],
                             marks={v: str(v) for v in (0, 5, 10, 15, 20)}, updatemode="mouseup",
                             tooltip={"placement": "bottom"}, allow_direct_input=False)], className="control"),
        html.Div([html.Label("chosen by"),
                  dcc.RadioItems(id=MODE, value=state["prune_mode"], inline=True, className="radio-row",
                                 options=[{"label": "most salient", "value": "salient"},
                                          {"label": "random", "value": "random"},
                                          {"label": "least salient", "value": "least"}])], className="control"),
        html.Div([html.Label("or tick the filters to switch off"),
                  dcc.Checklist(id=CHECKLIST, options=options, value=checked_filters(view),
                                className=checklist_class(state["prune_mode"]), inputClassName="filter-check-input")],
                 className="control"),
        className="col-5",
    )
    prediction = card("Prediction with those filters off",
                      dcc.Loading(html.Div(id=sid("prediction")), type="dot", delay_show=150), className="col-7")
    return html.Div([controls, prediction], className="row")


def checked_filters(view: View) -> list[int]:
    """The boxes a link ticks: the top ``prune`` filters in "most salient" mode, none in the others."""
    return salient_checks(view.filters, view.state["prune_top_k"]) if view.state["prune_mode"] == "salient" else []


def salient_checks(filters, prune_top_k) -> list[int]:
    """The ids of the ``prune_top_k`` most salient filters (what the slider ticks in "most salient" mode)."""
    return [int(f["filter"]) for f in (filters or [])[: int(prune_top_k or 0)]]


def checklist_class(mode: str) -> str:
    """The checkboxes only choose filters in "most salient" mode; other modes grey them out."""
    return "filter-checklist" + ("" if mode == "salient" else " is-disabled")


def pruning(client: BackendClient, subject: Subject, trigger: str | None, checked, prune_top_k, mode, filters):
    """One callback for all pruning controls -> (ticked filters, checklist class, prediction panel).

    In "most salient" mode moving the slider (or switching to that mode) ticks the top-k filters; ticking
    boxes by hand prunes exactly those. Random/least modes prune ``prune_top_k`` filters chosen by the backend."""
    if mode == "salient" and trigger in (TOP_K, MODE):
        checked = salient_checks(filters, prune_top_k)
    return checked or [], checklist_class(mode), prediction_panel(client, subject, checked, prune_top_k, mode)


def _flip_label(label, before: int, after: int) -> tuple[str, str]:
    if before == after:
        return "unchanged", "flip-none"
    if label is not None and after == int(label):
        return "fixed ✔", "flip-fixed"
    if label is not None and before == int(label):
        return "broken ✘", "flip-broken"
    return "changed", "flip-changed"


def prediction_panel(client: BackendClient, subject: Subject, checked, prune_top_k: int, mode: str):
    """The sample's prediction, and after pruning the new one and its neighbours' (which ones flip)."""
    try:
        detail = client.sample(subject)
        names = detail.get("class_names") or client.info().get("classes", [])
        label = detail.get("label")
        result = None
        if mode == "salient" and checked:
            result = client.prune(subject, filters=[int(c) for c in checked])
        elif mode != "salient" and prune_top_k:
            result = client.prune(subject, top_k=int(prune_top_k), mode=mode)
    except BackendError as exc:
        return error_alert(exc, "the pruned prediction")
    before = detail["probs"]
    if result is None:
        fig = figures.probability_figure(names, before, None, label)
        return [html.Div("No filters pruned: tick filters or move the slider.", className="prune-summary"),
                dcc.Graph(figure=fig, config={"displayModeBar": False}, id=sid("prob-graph"))]
    b_pred, a_pred = int(result["before"]["pred"]), int(result["after"]["pred"])
    flip, flip_class = _flip_label(label, b_pred, a_pred)
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
        id=sid("prune-summary"),
    )
    fig = figures.probability_figure(names, result["before"]["probs"], result["after"]["probs"], label)
    rows = []
    fixed = 0
    for nb in result.get("neighbors", []):
        nb_b, nb_a = int(nb["before"]["pred"]), int(nb["after"]["pred"])
        text, cls = _flip_label(nb.get("label"), nb_b, nb_a)
        fixed += cls == "flip-fixed"
        rows.append(html.Tr([
            html.Td(dcc.Link(html.Img(src=media_url(Subject("samples", str(nb["id"]))), className="mini-img"),
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
    return [summary, dcc.Graph(figure=fig, config={"displayModeBar": False}, id=sid("prob-graph")), neighbours]


def register(app, client: BackendClient) -> None:
    @app.callback(Output(CHECKLIST, "value"), Output(CHECKLIST, "className"), Output(sid("prediction"), "children"),
                  Input(CHECKLIST, "value"), Input(TOP_K, "value"), Input(MODE, "value"),
                  State(sid("subject"), "data"), State(sid("filters"), "data"))
    def _pruning(checked, prune_top_k, mode, subject, filters):
        return pruning(client, subject_of(subject), ctx.triggered_id, checked, prune_top_k, mode, filters)
