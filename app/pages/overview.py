"""Overview: what model on what data, how accurate, where the mistakes are (confusion matrix) and how
mistakes differ in parameter space on average (the paper's Figures 1 and 2)."""

from __future__ import annotations

from urllib.parse import urlencode

import dash
import numpy as np
from dash import Input, Output, dcc, html, no_update

from app import figures
from app.client import BackendClient, BackendError
from app.components import alert, card, class_name, error_alert, page_heading
from app.pages import page

PREFIX = "overview"
AXIS = f"{PREFIX}-axis"


@page
def layout(client: BackendClient, info: dict, **_query) -> html.Div:
    acc = float(info.get("accuracy", 0.0))
    n = int(info.get("num_samples", 0))
    stats = [
        ("Model", info.get("model", "?")),
        ("Dataset", info.get("dataset", "?")),
        ("Samples", f"{n:,}"),
        ("Accuracy", f"{acc:.1%}"),
        ("Mistakes", f"{round(n * (1 - acc)):,}"),
        ("Filters", f"{int(info.get('num_filters', 0)):,} in {len(info.get('layers', []))} layers"),
    ]
    return html.Div(
        [
            page_heading("Overview: where the model goes wrong"),
            dcc.Location(id=f"{PREFIX}-nav", refresh="callback-nav"),
            dcc.Store(id=f"{PREFIX}-load", data=0),
            html.Div([html.Div([html.Div(k, className="stat-key"), html.Div(v, className="stat-value", title=str(v))],
                               className="stat") for k, v in stats], className="stats-row"),
            html.Div(
                [
                    card("Where the model goes wrong",
                         dcc.Loading(html.Div(id=f"{PREFIX}-confusion-box"), type="dot"),
                         className="col-7",
                         extra=html.Span("confusion matrix: click a cell to see that kind of mistake",
                                         className="hint")),
                    card("Most frequent confusions", dcc.Loading(html.Div(id=f"{PREFIX}-top-confusions"), type="dot"),
                         html.P("Parameter-space saliency asks which filters are responsible for a mistake: "
                                "the gradient of the loss with respect to each filter, standardized over the "
                                "dataset. Open a mistake to see its most salient filters, the pixels that drive "
                                "them, and what happens when you switch them off.", className="hint"),
                         className="col-5"),
                ],
                className="row",
            ),
            html.Div([html.Label("x axis of Figures 1 and 2"),
                      dcc.RadioItems(id=AXIS, value="layers", inline=True, className="radio-row",
                                     options=[{"label": "layers at equal width (as in the paper)", "value": "layers"},
                                              {"label": "one step per filter", "value": "filters"}])],
                     className="control"),
            card("Misclassified samples have different saliency profiles (paper, Figure 2)",
                 dcc.Loading(html.Div(id=f"{PREFIX}-fig2-box"), type="dot"),
                 html.P("As in the paper, the filters of each layer are sorted by their mean z, highest first, which "
                        "draws the saw-tooth: along x is a filter's rank within its layer, not a fixed filter.",
                        className="hint", id=f"{PREFIX}-fig2-note")),
            card("Raw gradient magnitudes differ by layer, hence the standardization (paper, Figure 1)",
                 dcc.Loading(html.Div(id=f"{PREFIX}-fig1-box"), type="dot")),
        ],
        className="page page-overview",
    )


def top_confusions(confusion: np.ndarray, names, limit: int = 8) -> list[tuple[int, int, int]]:
    """The most frequent (true, pred, count) off-diagonal cells, largest first."""
    confusion = np.asarray(confusion)
    cells = [(int(t), int(p), int(confusion[t, p])) for t in range(len(confusion)) for p in range(len(confusion))
             if t != p and confusion[t, p] > 0]
    return sorted(cells, key=lambda c: -c[2])[:limit]


def gallery_href(true_class: int | None, pred_class: int | None) -> str:
    query = {k: v for k, v in (("true", true_class), ("pred", pred_class)) if v is not None}
    return "/mistakes" + (f"?{urlencode(query)}" if query else "")


def confusion_href(true_class: int, pred_class: int) -> str:
    """The page of one kind of mistake (app/pages/confusion.py)."""
    return f"/confusion/{int(true_class)}/{int(pred_class)}"


def cell_href(true_class: int, pred_class: int) -> str:
    """Where a matrix cell leads: a confusion's own page, or the gallery for the diagonal (correct samples)."""
    return gallery_href(true_class, pred_class) if true_class == pred_class else confusion_href(true_class, pred_class)


def confusion_table(confusion: np.ndarray, names) -> html.Details:
    """The matrix as a table (its text alternative): every count links to its cell's page, so the keyboard
    reaches every cell."""
    n = len(confusion)
    header = html.Tr([html.Th("true ↓ / predicted →", scope="col")]
                     + [html.Th(class_name(names, p), scope="col") for p in range(n)])
    rows = [html.Tr([html.Th(class_name(names, t), scope="row")]
                    + [html.Td(dcc.Link(f"{int(confusion[t, p]):,}", href=cell_href(t, p),
                                        title=f"true {class_name(names, t)}, predicted {class_name(names, p)}"))
                       for p in range(n)]) for t in range(n)]
    return html.Details([html.Summary("the matrix as a table (keyboard: every count opens its page)"),
                         html.Table([html.Thead(header), html.Tbody(rows)], className="flip-table",
                                    id=f"{PREFIX}-confusion-table")], className="table-details")


def render(client: BackendClient, by_layer: bool = True) -> tuple:
    """Everything the overview shows, or a message in each place when the backend fails; ``by_layer``: the
    figures give every layer the same width."""
    try:
        info = client.info()
        summary = client.summary()
    except BackendError as exc:
        message = error_alert(exc, "the dataset summary")
        return message, message, message, message
    names = list(info.get("classes", []))
    layers = figures.parse_layers(info.get("layers"))
    confusion = np.asarray(summary["confusion"])
    conf_graph = html.Div([dcc.Graph(id=f"{PREFIX}-confusion", figure=figures.confusion_figure(confusion, names),
                                     config={"displayModeBar": False}, className="clickable-graph"),
                           confusion_table(confusion, names)])
    rows = [
        dcc.Link([html.Span(class_name(names, t), className="conf-true"), html.Span(" → ", className="arrow"),
                  html.Span(class_name(names, p), className="conf-pred"), html.Span(f"{c:,}", className="conf-count")],
                 href=confusion_href(t, p), className="conf-row")
        for t, p, c in top_confusions(confusion, names)
    ]
    top = html.Div(rows or [alert("No mistakes at all.", "info")], className="conf-list")
    graph_config = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
    if len(summary.get("mean_profile_correct", [])) and len(summary.get("mean_profile_misclassified", [])):
        fig2 = dcc.Graph(figure=figures.average_profiles_figure(np.asarray(summary["mean_profile_correct"]),
                                                                np.asarray(summary["mean_profile_misclassified"]),
                                                                layers, by_layer), config=graph_config)
    else:
        fig2 = alert("Figure 2 needs both correct and misclassified samples; this dataset lacks one kind.", "info")
    if len(summary.get("mean_raw", [])):
        fig1 = dcc.Graph(figure=figures.raw_gradient_figure(np.asarray(summary["mean_raw"]), layers, by_layer),
                         config=graph_config)
    else:
        fig1 = alert("The backend sent no raw saliency averages.", "info")
    return conf_graph, top, fig2, fig1


def confusion_click(click_data, names) -> str | None:
    """A click on a confusion cell -> its page (``cell_href``; None: not a cell).

    Dash passes a heatmap click as the cell's axis labels (no customdata), so map class names back."""
    try:
        point = click_data["points"][0]
        return cell_href(list(names).index(point["y"]), list(names).index(point["x"]))
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/", layout=layout)

    @app.callback(
        Output(f"{PREFIX}-confusion-box", "children"),
        Output(f"{PREFIX}-top-confusions", "children"),
        Output(f"{PREFIX}-fig2-box", "children"),
        Output(f"{PREFIX}-fig1-box", "children"),
        Input(f"{PREFIX}-load", "data"),
        Input(AXIS, "value"),
    )
    def _render(_, axis):
        return render(client, axis != "filters")

    @app.callback(Output(f"{PREFIX}-nav", "href"), Input(f"{PREFIX}-confusion", "clickData"),
                  prevent_initial_call=True)
    def _click(click_data):
        try:
            names = client.info().get("classes", [])
        except BackendError:
            return no_update
        return confusion_click(click_data, names) or no_update
