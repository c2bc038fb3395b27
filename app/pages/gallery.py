"""Mistake gallery: thumbnails of misclassified samples, filtered by true class, predicted class and
confidence, paged on the server so it stays fast with any number of mistakes."""

from __future__ import annotations

import math

import dash
from dash import Input, Output, State, ctx, dcc, html

from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, error_alert, thumbnail
from app.pages import page
from app.url_state import Field, QueryState, choice, integer, number

PREFIX = "gallery"
PAGE_SIZE = 40
SHOW_OPTIONS = [("mistakes", "Mistakes"), ("all", "All samples"), ("correct", "Correct")]


STATE = QueryState(
    Field("true_class", None, integer(), key="true"),
    Field("pred_class", None, integer(), key="pred"),
    Field("show", None, choice([v for v, _ in SHOW_OPTIONS])),
    Field("min_conf", 0.0, number(0.0, 1.0), write=lambda v: round(v, 2)),
    Field("max_conf", 1.0, number(0.0, 1.0), write=lambda v: round(v, 2)),
    Field("page", 0, integer(0)),
)


def parse_query(query) -> dict:
    """The gallery's URL query -> its filter state, invalid values dropped. A link to one class as both true and
    predicted (a diagonal cell of the confusion matrix) shows the correct samples unless it says otherwise."""
    state = STATE.parse(query)
    if state["show"] is None:
        diagonal = state["true_class"] is not None and state["true_class"] == state["pred_class"]
        state["show"] = "correct" if diagonal else "mistakes"
    state["max_conf"] = max(state["max_conf"], state["min_conf"])
    return state


def build_query(state: dict) -> str:
    """Filter state -> URL query (defaults left out, so plain links stay short)."""
    return STATE.build({**state, "show": None if state["show"] == "mistakes" else state["show"]})


@page
def layout(client: BackendClient, info: dict, **query) -> html.Div:
    state = parse_query(query)
    names = list(info.get("classes", []))
    class_options = [{"label": name, "value": i} for i, name in enumerate(names)]
    controls = html.Div(
        [
            html.Div([html.Label("True class", htmlFor=f"{PREFIX}-true"),
                      dcc.Dropdown(id=f"{PREFIX}-true", options=class_options, value=state["true_class"],
                                   placeholder="any", clearable=True)], className="control"),
            html.Div([html.Label("Predicted class", htmlFor=f"{PREFIX}-pred"),
                      dcc.Dropdown(id=f"{PREFIX}-pred", options=class_options, value=state["pred_class"],
                                   placeholder="any", clearable=True)], className="control"),
            html.Div([html.Label("Confidence of the prediction"),
                      dcc.RangeSlider(id=f"{PREFIX}-conf", min=0, max=1, step=0.05, value=[state["min_conf"], state["max_conf"]],
                                      marks={v / 4: f"{v * 25}%" for v in range(5)}, allowCross=False,
                                      updatemode="mouseup", allow_direct_input=False)],
                     className="control control-wide"),
            html.Div([html.Label("Show"),
                      dcc.RadioItems(id=f"{PREFIX}-show", options=[{"label": l, "value": v} for v, l in SHOW_OPTIONS],
                                     value=state["show"], inline=True, className="radio-row")],
                     className="control"),
        ],
        className="controls-row",
    )
    pager = html.Div(
        [
            html.Button("‹ Prev", id=f"{PREFIX}-prev", className="btn", n_clicks=0),
            html.Span(id=f"{PREFIX}-page-label", className="page-label"),
            html.Button("Next ›", id=f"{PREFIX}-next", className="btn", n_clicks=0),
        ],
        className="pager",
    )
    return html.Div(
        [
            dcc.Location(id=f"{PREFIX}-location", refresh=False),
            dcc.Store(id=f"{PREFIX}-page", data=state["page"]),
            card("Mistake gallery", controls, extra=pager),
            dcc.Loading(html.Div(id=f"{PREFIX}-results", className="gallery-results"), type="dot",
                        delay_show=150),
        ],
        className="page page-gallery",
    )


def _first_index(client: BackendClient, query: dict, total: int, below) -> int:
    """Smallest position in the confidence-sorted listing whose confidence satisfies ``below`` (a predicate
    that holds from some position on, since confidences only decrease); ``total`` if none does."""
    lo, hi = 0, total
    while lo < hi:
        mid = (lo + hi) // 2
        item = client.samples(**query, sort="confidence", offset=mid, limit=1)["items"][0]
        if below(float(item["confidence"])):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fetch_page(client: BackendClient, state: dict) -> tuple[int, list[dict]]:
    """(number of matches, one page of them), most confident first.

    The backend filters by class and correctness; the confidence range is a contiguous window of its
    confidence-sorted listing, found by binary search (about 2·log2(n) one-item requests)."""
    query = {"correct": {"mistakes": False, "correct": True, "all": None}[state["show"]],
             "true_class": state["true_class"], "pred_class": state["pred_class"]}
    low, high = state["min_conf"], state["max_conf"]
    offset = state["page"] * PAGE_SIZE
    if low <= 0 and high >= 1:
        page = client.samples(**query, sort="confidence", offset=offset, limit=PAGE_SIZE)
        return int(page["total"]), page["items"]
    total = int(client.samples(**query, offset=0, limit=1)["total"])
    start = _first_index(client, query, total, lambda c: c <= high) if high < 1 else 0
    stop = _first_index(client, query, total, lambda c: c < low) if low > 0 else total
    count = max(0, stop - start)
    if offset >= count:
        return count, []
    page = client.samples(**query, sort="confidence", offset=start + offset, limit=min(PAGE_SIZE, count - offset))
    return count, page["items"]


def render_results(client: BackendClient, state: dict) -> tuple:
    """(grid, page label, prev disabled, next disabled, clamped page) for a filter state."""
    try:
        names = list(client.info().get("classes", []))
        total, items = fetch_page(client, state)
    except BackendError as exc:
        return error_alert(exc, "the samples"), "", True, True, state["page"]
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if state["page"] >= pages and total:
        return render_results(client, {**state, "page": pages - 1})
    what = {"mistakes": "mistakes", "correct": "correct samples", "all": "samples"}[state["show"]]
    if not items:
        grid = alert(f"No {what} match these filters.", "info")
    else:
        grid = html.Div(
            [thumbnail(Subject("samples", str(it["id"])), names, it["label"], it["pred"],
                       caption=f"{float(it['confidence']):.0%} sure", id_prefix=f"{PREFIX}-thumb")
             for it in items],
            className="thumb-grid",
        )
    label = f"{total:,} {what} · page {state['page'] + 1} of {pages} · most confident first"
    return grid, label, state["page"] <= 0, state["page"] >= pages - 1, state["page"]


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/mistakes", layout=layout)

    @app.callback(
        Output(f"{PREFIX}-results", "children"),
        Output(f"{PREFIX}-page-label", "children"),
        Output(f"{PREFIX}-prev", "disabled"),
        Output(f"{PREFIX}-next", "disabled"),
        Output(f"{PREFIX}-page", "data"),
        Output(f"{PREFIX}-location", "search"),
        Output("gallery-memory", "data"),
        Input(f"{PREFIX}-true", "value"),
        Input(f"{PREFIX}-pred", "value"),
        Input(f"{PREFIX}-conf", "value"),
        Input(f"{PREFIX}-show", "value"),
        Input(f"{PREFIX}-prev", "n_clicks"),
        Input(f"{PREFIX}-next", "n_clicks"),
        State(f"{PREFIX}-page", "data"),
    )
    def _update(true_class, pred_class, conf, show, _prev, _next, page):
        trigger = ctx.triggered_id
        if trigger == f"{PREFIX}-prev":
            page = max(0, (page or 0) - 1)
        elif trigger == f"{PREFIX}-next":
            page = (page or 0) + 1
        elif trigger is not None:
            page = 0  # a new filter starts from the first page
        low, high = conf or [0.0, 1.0]
        state = {"true_class": true_class, "pred_class": pred_class, "min_conf": low, "max_conf": high,
                 "show": show or "mistakes", "page": page or 0}
        grid, label, no_prev, no_next, page = render_results(client, state)
        search = build_query({**state, "page": page})
        return grid, label, no_prev, no_next, page, search, search
