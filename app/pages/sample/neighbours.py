"""Card: the sample's nearest neighbours in parameter-saliency space (over a chosen layer range) or in
feature space, optionally mistakes only; tiles mark the same and the reverse confusion."""

from __future__ import annotations

import math

from dash import Input, Output, State, dcc, html

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, error_alert, thumbnail
from app.pages.sample.view import View, layer_span, sid, slider_layers, subject_of

NEIGHBORS = 10
LAYERS = sid("layers")
SPACE = sid("space")
MISCLASSIFIED_ONLY = sid("mistakes-only")


def describe_layers(value, layers: list[tuple[str, int, int]]) -> str:
    span = layer_span(value, len(layers))
    if span is None:
        return f"all {len(layers)} layers"
    first, last = figures.short_layer(layers[span[0]][0]), figures.short_layer(layers[span[1] - 1][0])
    return f"layers {span[0] + 1}–{span[1]} of {len(layers)}: {first} … {last}" if span[1] - span[0] > 1 else \
        f"layer {span[0] + 1} of {len(layers)}: {first}"


def _slider_marks(num_layers: int) -> dict:
    step = max(1, math.ceil(num_layers / 8))
    marks = {i: str(i) for i in range(0, num_layers + 1, step)}
    marks[num_layers] = str(num_layers)
    return marks


def layout(view: View):
    layers = view.layers
    value = slider_layers(view.state["layers"], len(layers))
    return card(
        "Nearest neighbours",
        html.Div(
            [
                html.Div([html.Label("Layer range"),
                          dcc.RangeSlider(id=LAYERS, min=0, max=len(layers), step=1, value=value,
                                          marks=_slider_marks(len(layers)), allowCross=False, pushable=1,
                                          updatemode="mouseup", allow_direct_input=False),
                          html.Div(describe_layers(value, layers), id=sid("layers-label"), className="hint")],
                         className="control control-wide"),
                html.Div([html.Label("Space"),
                          dcc.RadioItems(id=SPACE, value=view.state["space"], inline=True, className="radio-row",
                                         options=[{"label": "parameter saliency", "value": "saliency"},
                                                  {"label": "features", "value": "feature"}])], className="control"),
                html.Div([html.Label("Filter"),
                          dcc.Checklist(id=MISCLASSIFIED_ONLY, value=["1"] if view.state["misclassified_only"] else [],
                                        options=[{"label": "mistakes only", "value": "1"}], className="radio-row")],
                         className="control"),
            ],
            className="controls-row",
        ),
        dcc.Loading(html.Div(id=sid("neighbors"), className="strip"), type="dot", delay_show=150),
        extra=html.Span([html.Span("same", className="legend-same"), " the same confusion as this sample · ",
                         html.Span("reversed", className="legend-reversed"), " the reverse confusion"],
                        className="hint"),
    )


def neighbor_strip(client: BackendClient, subject: Subject, layers_value, space: str, misclassified_only) -> list:
    try:
        info = client.info()
        detail = client.sample(subject)
        # a layer range selects filters, so it only applies to the parameter-saliency space
        layers = layer_span(layers_value, len(info.get("layers", []))) if space != "feature" else None
        hits = client.neighbors(subject, k=NEIGHBORS, layers=layers, space=space or "saliency",
                                misclassified_only=bool(misclassified_only))
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
        tiles.append(thumbnail(Subject("samples", str(hit["id"])), names, hit["label"], hit["pred"],
                               caption=f"sim {float(hit['score']):.2f}", badge=badge, extra_class=extra,
                               id_prefix=sid("nb")))
    return tiles


def register(app, client: BackendClient) -> None:
    @app.callback(Output(sid("neighbors"), "children"), Output(sid("layers-label"), "children"),
                  Output(LAYERS, "disabled"), Input(LAYERS, "value"), Input(SPACE, "value"),
                  Input(MISCLASSIFIED_ONLY, "value"), State(sid("subject"), "data"))
    def _neighbors(layers_value, space, misclassified_only, subject):
        strip = neighbor_strip(client, subject_of(subject), layers_value, space, misclassified_only)
        if space == "feature":
            return strip, "feature space: the layer range does not apply", True
        try:
            layers = figures.parse_layers(client.info().get("layers"))
        except BackendError:
            layers = []
        return strip, describe_layers(layers_value, layers) if layers else "", False
