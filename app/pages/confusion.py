"""Confusion page ``/confusion/<true>/<pred>``: one kind of mistake (samples of one class predicted as
another). Its fingerprint (the mean standardized profile of those mistakes, beside the true class's correct
samples), the filters it leans on most (each opening its filter page), the mistakes themselves, and the
"Fix this kind of mistake" panel. Every confusion-matrix cell of the overview opens one."""

from __future__ import annotations

import re

import dash
from dash import Input, Output, dcc, html, no_update

from app import confusion_figures, figures
from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, class_name, thumbnail
from app.pages import group_fix, page
from app.pages.overview import gallery_href

PREFIX = "confusion"
TOP_FILTERS = 15
MAX_THUMBS = 24  # the rest are one click away in the gallery
CLASS = re.compile(r"^[0-9]{1,9}$")


@page
def layout(client: BackendClient, info: dict, true_class: str = "", pred_class: str = "", **_query) -> html.Div:
    names = list(info.get("classes", []))
    back = dcc.Link("‹ Overview", href="/", className="back-link", id=f"{PREFIX}-back")
    if not (CLASS.match(true_class) and CLASS.match(pred_class)):
        return message_page(back, f"/confusion/{true_class}/{pred_class} names no pair of classes: the address is "
                                  "/confusion/<true class number>/<predicted class number>.")
    true, pred = int(true_class), int(pred_class)
    title = f"{class_name(names, true)} predicted as {class_name(names, pred)}"
    try:
        answer = client.confusion(true, pred, top=TOP_FILTERS, profile=True)
    except BackendError as exc:
        return message_page(back, problem(exc, true, pred, names), title)
    layers = figures.parse_layers(info.get("layers"))
    return html.Div(
        [
            dcc.Location(id=f"{PREFIX}-nav", refresh="callback-nav"),
            html.Div([back, html.Div([html.H1(title), html.Span(f"{answer['count']:,} mistakes",
                                                                 className="chip chip-wrong", id=f"{PREFIX}-count")],
                                     className="confusion-header")], className="page-title"),
            html.P(f"Every sample whose true class is {class_name(names, true)} and which the model predicts as "
                   f"{class_name(names, pred)}. Its fingerprint is the mean standardized saliency of each filter "
                   "over these mistakes: filters far above their usual gradient (z > 0) are the ones this kind of "
                   f"mistake leans on. The green line is the same mean over the correctly classified "
                   f"{class_name(names, true)} samples, so where the lines part is what sets these mistakes apart.",
                   className="hint", id=f"{PREFIX}-about"),
            card("Fingerprint: mean standardized saliency of these mistakes",
                 dcc.Graph(id=f"{PREFIX}-fingerprint", config={"displayModeBar": False},
                           className="clickable-graph",
                           figure=confusion_figures.fingerprint_figure(
                               answer.get("profile") or [], answer.get("class_profile"), layers,
                               [f["filter"] for f in answer["top_filters"]], class_name(names, true),
                               class_name(names, pred)))),
            html.Div([card("Filters it leans on most", filter_table(answer), className="col-5",
                           extra=html.Span("click a filter: where else it drives mistakes", className="hint")),
                      group_fix.layout(PREFIX, {"confusion": [true, pred]}, className="col-7")], className="row"),
            card("The mistakes", mistakes(answer, true, pred, names),
                 extra=dcc.Link(f"all {answer['count']:,} in the gallery ›", href=gallery_href(true, pred),
                                id=f"{PREFIX}-gallery")),
        ],
        className="page page-confusion",
    )


def message_page(back, text: str, title: str = "Confusion") -> html.Div:
    return html.Div([html.Div([back, html.H1(title)], className="page-title"), alert(text, "warn"),
                     dcc.Link("See every confusion in the overview's matrix", href="/")], className="page")


def problem(exc: BackendError, true: int, pred: int, names) -> str:
    """The backend's refusal in the page's words (404: no such class or no such mistake; 422: same class)."""
    if exc.status == 404 and "predicted as" in exc.message:
        return (f"The model makes no mistake of this kind: no {class_name(names, true)} sample is predicted as "
                f"{class_name(names, pred)}.")
    if exc.status in (404, 422):
        return f"No such confusion: {exc.message}."
    return f"Could not load this confusion: {exc.message}"


def filter_table(answer: dict) -> html.Table:
    rows = confusion_figures.filter_rows(answer["top_filters"], answer.get("class_profile"))
    header = html.Tr([html.Th("filter", scope="col"), html.Th("mean z, these mistakes", scope="col"),
                      html.Th("mean z, correct", scope="col"), html.Th("difference", scope="col")])
    body = [html.Tr([html.Td(dcc.Link(row["name"], href=f"/filter/{row['filter']}",
                                      id=f"{PREFIX}-filter-{row['filter']}",
                                      title=f"filter id {row['filter']}: its page")),
                     html.Td(f"{row['mean_z']:.2f}"),
                     html.Td("—" if row["correct_z"] is None else f"{row['correct_z']:.2f}"),
                     html.Td("—" if row["excess"] is None else f"{row['excess']:+.2f}")]) for row in rows]
    return html.Table([html.Thead(header), html.Tbody(body)], className="flip-table", id=f"{PREFIX}-filters")


def mistakes(answer: dict, true: int, pred: int, names) -> html.Div:
    ids = answer["sample_ids"][:MAX_THUMBS]
    tiles = [thumbnail(Subject("samples", str(i)), names, true, pred, id_prefix=f"{PREFIX}-thumb") for i in ids]
    more = answer["count"] - len(ids)
    note = html.P(f"The first {len(ids)} by id; {more:,} more in the gallery.", className="hint") if more > 0 else None
    return html.Div([html.Div(tiles, className="thumb-grid", id=f"{PREFIX}-mistakes"), note])


def clicked_filter(click_data) -> str | None:
    """A click on a marked top filter of the fingerprint -> its filter page (None: not a marked filter)."""
    try:
        return f"/filter/{int(click_data['points'][0]['customdata'])}"
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path_template="/confusion/<true_class>/<pred_class>", layout=layout)
    group_fix.register(app, client, PREFIX)

    @app.callback(Output(f"{PREFIX}-nav", "href"), Input(f"{PREFIX}-fingerprint", "clickData"),
                  prevent_initial_call=True)
    def _click(click_data):
        return clicked_filter(click_data) or no_update
