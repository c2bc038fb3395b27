"""Mistake gallery: thumbnails of misclassified samples, filtered by true class, predicted class and
confidence, paged on the server so it stays fast with any number of mistakes."""

from __future__ import annotations

import math

import dash
from dash import Input, Output, State, dcc, html

from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, error_alert, lone_trigger, thumbnail
from app.pages import page
from app.url_state import Field, QueryState, choice, integer, number

PREFIX = "gallery"
PAGE_SIZE = 40
SHOW_OPTIONS = [("mistakes", "Mistakes"), ("all", "All samples"), ("correct", "Correct")]


TITLES = {"mistakes": "Mistake gallery", "all": "All samples", "correct": "Correctly classified samples"}
STATE = QueryState(
    Field("true_class", None, integer(), key="true"),
    Field("pred_class", None, integer(), key="pred"),
    Field("show", None, choice([v for v, _ in SHOW_OPTIONS])),
    Field("min_conf", 0.0, number(0.0, 1.0), write=lambda v: round(v, 2)),
    Field("max_conf", 1.0, number(0.0, 1.0), write=lambda v: round(v, 2)),
    # ?p= counts pages from 1, as the label does; ?page= (from 0) is what older links say, still read
    Field("page_number", None, integer(1), key="p"),
    Field("legacy_page", 0, integer(0), key="page"),
)
FILTER_KEYS = ("true_class", "pred_class", "show", "min_conf", "max_conf")


def parse_query(query) -> dict:
    """The gallery's URL query -> its filter state, invalid values dropped. A link to one class as both true and
    predicted (a diagonal cell of the confusion matrix) shows the correct samples unless it says otherwise."""
    state = STATE.parse(query)
    number, legacy = state.pop("page_number"), state.pop("legacy_page")
    state["page"] = legacy if number is None else number - 1
    if state["show"] is None:
        diagonal = state["true_class"] is not None and state["true_class"] == state["pred_class"]
        state["show"] = "correct" if diagonal else "mistakes"
    state["max_conf"] = max(state["max_conf"], state["min_conf"])
    return state


def build_query(state: dict) -> str:
    """Filter state -> URL query (defaults left out, so plain links stay short)."""
    return STATE.build({**state, "show": None if state["show"] == "mistakes" else state["show"],
                        "page_number": state["page"] + 1 if state["page"] else None})


def filter_key(state: dict) -> list:
    """What selects the samples (everything but the page): a change of it starts again from the first page."""
    return [state[k] if k not in ("min_conf", "max_conf") else round(float(state[k]), 4) for k in FILTER_KEYS]


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
    return html.Div(
        [
            dcc.Location(id=f"{PREFIX}-location", refresh=False),
            dcc.Store(id=f"{PREFIX}-page", data={"page": state["page"], "filters": filter_key(state)}),
            card(html.Span(TITLES[state["show"]], id=f"{PREFIX}-title"), controls, extra=pager(""), level=1),
            dcc.Loading(html.Div(id=f"{PREFIX}-results", className="gallery-results"), type="dot",
                        delay_show=150),
            html.Div(pager("-bottom"), className="pager-bottom"),
        ],
        className="page page-gallery",
    )


def pager(suffix: str) -> html.Nav:
    """Prev, the page label and Next; the gallery has one pair above the grid and one below."""
    return html.Nav(
        [
            html.Button("‹ Prev", id=f"{PREFIX}-prev{suffix}", className="btn", n_clicks=0, title="previous page"),
            html.Span(id=f"{PREFIX}-page-label{suffix}", className="page-label", **{"aria-live": "polite"}),
            html.Button("Next ›", id=f"{PREFIX}-next{suffix}", className="btn", n_clicks=0, title="next page"),
        ],
        className="pager", **{"aria-label": f"pages{' (bottom)' if suffix else ''}"},
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

    buttons = {f"{PREFIX}-{name}{suffix}": step for name, step in (("prev", -1), ("next", 1))
               for suffix in ("", "-bottom")}

    @app.callback(
        Output(f"{PREFIX}-results", "children"),
        Output(f"{PREFIX}-page-label", "children"),
        Output(f"{PREFIX}-page-label-bottom", "children"),
        Output(f"{PREFIX}-prev", "disabled"),
        Output(f"{PREFIX}-prev-bottom", "disabled"),
        Output(f"{PREFIX}-next", "disabled"),
        Output(f"{PREFIX}-next-bottom", "disabled"),
        Output(f"{PREFIX}-title", "children"),
        Output(f"{PREFIX}-page", "data"),
        Output(f"{PREFIX}-location", "search"),
        Output("gallery-memory", "data"),
        Input(f"{PREFIX}-true", "value"),
        Input(f"{PREFIX}-pred", "value"),
        Input(f"{PREFIX}-conf", "value"),
        Input(f"{PREFIX}-show", "value"),
        *(Input(button, "n_clicks") for button in buttons),
        State(f"{PREFIX}-page", "data"),
    )
    def _update(true_class, pred_class, conf, show, *clicks_and_memory):
        low, high = conf or [0.0, 1.0]
        state = {"true_class": true_class, "pred_class": pred_class, "min_conf": low, "max_conf": high,
                 "show": show or "mistakes"}
        state["page"] = next_page(clicks_and_memory[-1], filter_key(state), lone_trigger(), buttons)
        grid, label, no_prev, no_next, page = render_results(client, state)
        search = build_query({**state, "page": page})
        return (grid, label, label, no_prev, no_prev, no_next, no_next, TITLES[state["show"]],
                {"page": page, "filters": filter_key(state)}, search, search)


def next_page(memory: dict | None, filters: list, trigger: str | None, buttons: dict[str, int]) -> int:
    """The page to show. A Prev/Next press counts only as the one input that changed (``lone_trigger``), and
    only a filter that really differs from the page's last one starts again from the first page; otherwise
    the page stays (the URL's)."""
    memory = memory or {"page": 0, "filters": None}
    page = int(memory.get("page") or 0)
    if trigger in buttons:
        return max(0, page + buttons[trigger])
    return page if memory.get("filters") == filters else 0
