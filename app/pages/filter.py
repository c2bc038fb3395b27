"""Filter page (``/filter/<index>``): one filter across the whole dataset. Where it sits in the model, how
salient it is on correct and on misclassified samples, the classes and confusions it drives, and its reference
samples of both kinds (most salient, most activating), each with the pixels that drive this filter.

Everything but the distribution (a callback, see ``distribution_card``) is drawn when the page opens;
thumbnails are plain ``<img>`` tags whose maps this UI server proxies from the backend (``map_url``), so the
browser fetches them side by side while the page is already readable.
"""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html
from flask import abort, request

from app import filter_figures
from app.client import BackendClient, BackendError, Subject
from app.components import ITEM_ID, alert, card, class_name, error_alert, proxied_png, thumbnail
from app.figures import filter_name, parse_layers, short_layer
from app.pages import page
from app.url_state import Field, QueryState, flag

PREFIX = "filter"
SHOWN = 12  # reference samples of each kind shown unless the link asks for all (?all=1)
LINKED_CONFUSIONS = 10  # confusion pairs listed with a link to their page
STATE = QueryState(Field("all", False, flag, write=lambda _: 1))
MAP_ROUTE = "/media/samples/<item_id>/filter-map.png"  # ?filter=I: the map for boosting filter I alone


def fid(name: str) -> str:
    """A component id of this page (page-prefixed, so no other page's ids can clash)."""
    return f"{PREFIX}-{name}"


def map_url(sample_id: int, filter_id: int) -> str:
    """Where the browser loads a sample's input-space map for one filter (proxied by this server)."""
    return f"/media/samples/{int(sample_id)}/filter-map.png?filter={int(filter_id)}"


def confusion_href(true_class: int, pred_class: int) -> str:
    return f"/confusion/{int(true_class)}/{int(pred_class)}"


EXPLAINED = ("A filter is one output channel of a convolution (or one row of a linear layer). Its saliency on a "
             "sample is how much the loss of that sample would change with the filter's weights (the mean "
             "|dLoss/dWeight| over them), standardized over the dataset: z = 3 means three standard deviations "
             "above this filter's usual value. A filter that is salient on a mistake is implicated in it.")


@page
def layout(client: BackendClient, info: dict, index: str = "", **query) -> html.Div:
    layers = parse_layers(info.get("layers"))
    count = layers[-1][2] if layers else int(info.get("num_filters", 0))
    if not ITEM_ID.match(index or ""):
        return bad_index(f"“{index}” is not a filter id: filter ids are whole numbers from 0 to {count - 1}.")
    filter_id = int(index)
    if not filter_id < count:
        return bad_index(f"There is no filter {filter_id} in this model: filter ids are 0 to {count - 1}.")
    show_all = STATE.parse(query)["all"]
    try:
        detail = client.filter_detail(filter_id)
    except BackendError as exc:
        detail = exc  # e.g. a dir without the analysis: the rest of the page still stands
    names = list(info.get("classes", []))
    sections = [position_card(layers, filter_id, detail), distribution_card(filter_id)]
    if isinstance(detail, BackendError):
        sections.append(error_alert(detail, "this filter's classes, confusions and reference samples"))
    else:
        sections += [html.Div([classes_card(detail, names), confusions_card(detail, names)], className="row"),
                     references_card(client, detail, names, filter_id, show_all)]
    return html.Div([title(layers, filter_id), html.P(EXPLAINED, className="hint", id=fid("explained")), *sections],
                    className="page page-filter")


def bad_index(message: str) -> html.Div:
    return html.Div([html.Div(html.H1("No such filter"), className="page-title"),
                     alert(message, "warn"), html.Div(id=fid("bad-index")),
                     dcc.Link("Go to the overview", href="/")], className="page page-filter")


def title(layers, filter_id: int) -> html.Div:
    return html.Div([dcc.Link("‹ Overview", href="/", className="back-link"),
                     html.Div([html.H1(f"Filter {filter_name(layers, filter_id)}", id=fid("title")),
                               html.Span(f"filter id {filter_id}", className="chip chip-muted")],
                              className="sample-header")], className="page-title")


def position_card(layers, filter_id: int, detail) -> html.Div:
    """Layer, channel, index and depth, in words and as a figure of the model's layers."""
    where = filter_figures.layer_of(layers, filter_id)
    lines = []
    if where is not None:
        name, start, stop = layers[where]
        depth = (where + 0.5) / len(layers)
        lines.append(html.P([html.B(f"output channel {filter_id - start}"), f" of the {stop - start} in ",
                             html.B(short_layer(name)), f", layer {where + 1} of {len(layers)} "
                             f"({'shallow' if depth < 1 / 3 else 'middle' if depth < 2 / 3 else 'deep'}: "
                             f"{depth:.0%} of the way from input to output); filter id {filter_id} of "
                             f"{layers[-1][2]:,}."], id=fid("where")))
    if isinstance(detail, dict):
        lines.append(html.P(f"Its raw saliency is {detail['raw_mean']:.3g} ± {detail['raw_std']:.3g} on average "
                            "over the dataset; z = (raw − mean) / std.", className="hint"))
    return card("Where it sits in the model", *lines,
                dcc.Graph(figure=filter_figures.position_figure(layers, filter_id), config={"displayModeBar": False},
                          id=fid("position-graph")),
                id=fid("position"))


def distribution_card(filter_id: int) -> html.Div:
    """Filled by a callback: the distribution reads one column of every sample's profile, which on a large
    dataset not yet in memory takes seconds, so the rest of the page does not wait for it."""
    return card("How salient it is, correct vs misclassified samples",
                dcc.Store(id=fid("index"), data=filter_id),
                dcc.Loading(html.Div(id=fid("distribution-box")), type="circle", delay_show=150),
                id=fid("distribution"))


def distribution_view(client: BackendClient, filter_id: int):
    try:
        distribution = client.filter_distribution(filter_id)
    except BackendError as exc:
        return error_alert(exc, "this filter's distribution")
    means = (distribution["correct_mean"], distribution["misclassified_mean"])
    summary = " · ".join(f"mean z on {name} samples {mean:.2f}" for name, mean in
                         zip(("correct", "misclassified"), means) if mean is not None)
    return [dcc.Graph(figure=filter_figures.distribution_figure(distribution["edges"], distribution["correct"],
                                                                distribution["misclassified"], means),
                      config={"displayModeBar": False}, id=fid("distribution-graph")),
            html.P(f"Each group as a share of itself (log scale), so the few mistakes compare with the many correct "
                   f"samples; dashed lines are the means ({summary}). Mass far to the right among the mistakes "
                   "means the filter is often implicated in them.", className="hint")]


def classes_card(detail: dict, names) -> html.Div:
    return card("Classes it drives",
                dcc.Graph(figure=filter_figures.classes_figure(detail["classes"], names),
                          config={"displayModeBar": False}, id=fid("classes-graph")),
                html.P("Mean z over each class's correctly classified samples: where the filter is salient even "
                       "when the model is right.", className="hint"),
                className="col-5", id=fid("classes"))


def confusions_card(detail: dict, names) -> html.Div:
    confusions = detail["confusions"]
    rows = [html.Tr([html.Td(dcc.Link(f"{class_name(names, c['true'])} → {class_name(names, c['pred'])}",
                                      href=confusion_href(c["true"], c["pred"]),
                                      id=fid(f"confusion-{c['true']}-{c['pred']}"))),
                     html.Td(f"{int(c['count']):,}"), html.Td(f"{float(c['mean_z']):.2f}")])
            for c in confusions[:LINKED_CONFUSIONS]]
    table = html.Table([html.Thead(html.Tr([html.Th("true → predicted"), html.Th("mistakes"), html.Th("mean z")])),
                        html.Tbody(rows)], className="flip-table", id=fid("confusions-table"))
    return card("Confusions it drives",
                dcc.Graph(figure=filter_figures.confusions_figure(confusions, names), config={"displayModeBar": False},
                          id=fid("confusions-graph")),
                html.P("Mean z over the mistakes of each (true, predicted) pair, largest first; faint bars are "
                       "pairs with few mistakes, whose mean says little. Open a pair:", className="hint"),
                table if rows else alert("The model makes no mistakes.", "info"),
                className="col-7", id=fid("confusions"))


def references_card(client: BackendClient, detail: dict, names, filter_id: int, show_all: bool) -> html.Div:
    """Both kinds of reference samples as tiles (image, then this filter's map), each linking to its page."""
    kinds = (("salient", "Where it is most salient", "top_samples", lambda s: f"z {float(s['z']):.1f}"),
             ("activating", "What activates it most", "top_activating",
              lambda s: "act —" if s["activation"] is None else f"act {float(s['activation']):.2f}"))
    picked = {key: detail[key] if show_all else detail[key][:SHOWN] for _, _, key, _ in kinds}
    ids = sorted({int(s["id"]) for chosen in picked.values() for s in chosen})
    try:
        found = client.parallel(*(lambda i=i: client.sample(Subject("samples", str(i))) for i in ids))
    except BackendError as exc:
        return card("Reference samples", error_alert(exc, "the reference samples"), id=fid("references"))
    samples = dict(zip(ids, found))
    stored = max(len(detail["top_samples"]), len(detail["top_activating"]))
    strips = []
    for kind, heading, key, caption in kinds:
        tiles = [reference_tile(samples[int(s["id"])], int(s["id"]), names, filter_id, caption(s), kind)
                 for s in picked[key]]
        strips += [html.H4(heading, className="strip-title"),
                   html.Div(tiles, className="strip strip-maps", id=fid(f"{kind}-samples")) if tiles
                   else alert("None stored.", "info")]
    page_href = f"/filter/{filter_id}"
    more = (dcc.Link(f"show all {stored} of each kind", href=f"{page_href}?all=1", id=fid("show-all"))
            if not show_all and stored > SHOWN else
            dcc.Link(f"show {SHOWN} of each kind", href=page_href, id=fid("show-fewer")) if show_all else None)
    return card("Reference samples", *strips,
                html.P("Most salient: the samples with the highest z of this filter (the analogue of relevance "
                       "maximization). Most activating: the samples whose images drive the filter's output "
                       "channel highest (activation maximization). Beside each image: the pixels that drive this "
                       "filter alone on that image (its input-space map). Click a tile to open the sample.",
                       className="hint"),
                extra=more, id=fid("references"))


def reference_tile(detail: dict, sample_id: int, names, filter_id: int, caption: str, kind: str) -> dcc.Link:
    """A sample tile whose picture is the image beside this filter's input-space map of it."""
    tile = thumbnail(Subject("samples", str(sample_id)), names, detail.get("label"), detail["pred"], caption=caption,
                     id_prefix=fid(kind))
    image = tile.children[0]
    drives = html.Img(src=map_url(sample_id, filter_id), className="thumb-img thumb-map",
                      alt=f"pixels of sample {sample_id} that drive filter {filter_id}")
    tile.children[0] = html.Div([image, drives], className="thumb-pair")
    return tile


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path_template="/filter/<index>", layout=layout,
                       title=lambda index="": f"Filter {index}")

    @app.callback(Output(fid("distribution-box"), "children"), Input(fid("index"), "data"))
    def _distribution(filter_id):
        return distribution_view(client, int(filter_id))

    @app.server.route(MAP_ROUTE)
    def _filter_map(item_id: str):
        chosen = request.args.get("filter", "")
        if not ITEM_ID.match(item_id) or not ITEM_ID.match(chosen):
            abort(404)
        return proxied_png(lambda: client.filter_map_png(Subject("samples", item_id), [int(chosen)]))
