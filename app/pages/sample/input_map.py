"""Card: the image beside its input-space saliency map, with the map's top_k and boost controls."""

from __future__ import annotations

import base64

from dash import Input, Output, State, dcc, html

from app.client import BackendClient, BackendError, Subject
from app.components import card, error_alert, media_url
from app.pages.sample.view import BOOSTS, MAX_TOP_K, View, sid, subject_of

TOP_K = sid("topk")
BOOST = sid("boost")


def layout(view: View):
    return card(
        "Image and input-space saliency",
        html.Div(
            [
                html.Figure([html.Img(src=media_url(view.subject), id=sid("image"), className="big-img",
                                      alt="input image"),
                             html.Figcaption("input")]),
                html.Figure([dcc.Loading(html.Div(id=sid("overlay"), className="big-img-box"), type="circle",
                                         delay_show=150),
                             html.Figcaption(["pixels that drive the salient filters",
                                              html.Div([html.Span("low"), html.Span(className="colour-scale-bar"),
                                                        html.Span("high")], className="colour-scale",
                                                       id=sid("colour-scale"),
                                                       title="saliency of each pixel, scaled per image")])]),
            ],
            className="image-pair",
        ),
        html.Div(
            [
                html.Div([html.Label("top_k salient filters boosted"),
                          dcc.Slider(id=TOP_K, min=1, max=MAX_TOP_K, step=1, value=view.state["top_k"],
                                     marks={v: str(v) for v in (1, 10, 20, 30, 40, 50)}, updatemode="mouseup",
                                     tooltip={"placement": "bottom"}, allow_direct_input=False)], className="control"),
                html.Div([html.Label("boost factor"),
                          dcc.Slider(id=BOOST, min=0, max=len(BOOSTS) - 1, step=1,
                                     value=BOOSTS.index(view.state["boost"]),
                                     marks={i: str(b) for i, b in enumerate(BOOSTS)}, updatemode="mouseup",
                                     allow_direct_input=False),
                          html.P("At 1 nothing is boosted, so there is no map. Above 1 the factor only sets how far "
                                 "the target profile is pushed: the map barely changes between 3 and 1000; top_k "
                                 "is the control that matters.", className="hint", id=sid("boost-hint"))],
                         className="control"),
            ],
            className="controls-stack",
        ),
        html.P("The map shows which pixels, if changed, would most move this image's saliency profile towards "
               "one where its top_k filters are boosted: the pixels that make those filters salient.",
               className="hint"),
        className="col-5",
    )


def overlay(client: BackendClient, subject: Subject, top_k: int, boost_index: int):
    boost = BOOSTS[int(boost_index)] if boost_index is not None else 100
    if boost <= 1:
        # the boosted profile equals the profile: the gradient is numerical noise, not a map
        return html.Div("No signal at boost 1: nothing is boosted. Choose a boost above 1.",
                        className="no-signal", id=sid("no-signal"))
    try:
        png = client.input_saliency_png(subject, top_k=int(top_k or 10), boost=float(boost))
    except BackendError as exc:
        return error_alert(exc, "the input-space saliency map")
    return html.Img(src="data:image/png;base64," + base64.b64encode(png).decode("ascii"), className="big-img",
                    id=sid("overlay-img"), alt=f"input-space saliency, top_k={top_k}, boost={boost}")


def register(app, client: BackendClient) -> None:
    @app.callback(Output(sid("overlay"), "children"), Input(TOP_K, "value"), Input(BOOST, "value"),
                  State(sid("subject"), "data"))
    def _overlay(top_k, boost_index, subject):
        return overlay(client, subject_of(subject), top_k, boost_index)
