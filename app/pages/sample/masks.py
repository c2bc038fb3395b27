"""Card: mask the pixels the input-space map points at (paper 3.4, Fig. 7), or as many random pixels, and see
the prediction and the top filters' saliency before and after."""

from __future__ import annotations

import base64

import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import card, class_name, error_alert, media_url
from app.pages.sample.input_map import BOOST, TOP_K
from app.pages.sample.view import BOOSTS, MASK_PERCENTS, View, sid, subject_of

PERCENT = sid("mask-percent")
MODE = sid("mask-mode")
SHOWN_FILTERS = 10


def layout(view: View):
    controls = html.Div([
        html.Div([html.Label("percent of pixels masked"),
                  dcc.Slider(id=PERCENT, min=0, max=len(MASK_PERCENTS) - 1, step=1,
                             value=MASK_PERCENTS.index(view.state["mask_percent"]),
                             marks={i: f"{p}%" for i, p in enumerate(MASK_PERCENTS)}, updatemode="mouseup",
                             allow_direct_input=False)], className="control"),
        html.Div([html.Label("which pixels"),
                  dcc.RadioItems(id=MODE, value=view.state["mask_mode"], inline=True, className="radio-row",
                                 options=[{"label": "most salient (input-space map)", "value": "salient"},
                                          {"label": "random", "value": "random"}])], className="control"),
    ], className="controls-stack")
    images = html.Div([
        html.Figure([html.Img(src=media_url(view.subject), className="big-img", alt="input image"),
                     html.Figcaption("original")]),
        html.Figure([dcc.Loading(html.Div(id=sid("mask-image"), className="big-img-box"), type="circle",
                                 delay_show=150),
                     html.Figcaption("masked (the fill is the dataset mean, as the model sees it)")]),
    ], className="image-pair")
    left = card("Masks", images, controls,
                html.P("Masking the pixels that make the salient filters salient should lower those filters' "
                       "saliency and, for a mistake, move the prediction towards the true class, more than masking "
                       "as many random pixels does. The map uses the top_k and boost of the card above.",
                       className="hint"), className="col-5", id=sid("masks-card"))
    right = card("Prediction and top filters, before → after masking",
                 dcc.Loading(html.Div(id=sid("mask-result")), type="dot", delay_show=150), className="col-7")
    return html.Div([left, right], className="row")


def filters_figure(filters: list[dict]) -> go.Figure:
    """The top filters' standardized saliency before and after masking, side by side."""
    names = [f"#{f['filter']}" for f in filters]
    fig = go.Figure([
        go.Bar(x=names, y=[f["z_before"] for f in filters], name="before", marker_color=figures.MUTED,
               hovertemplate="%{x}: z %{y:.2f} before<extra></extra>"),
        go.Bar(x=names, y=[f["z_after"] for f in filters], name="after masking", marker_color=figures.ACCENT,
               hovertemplate="%{x}: z %{y:.2f} after<extra></extra>"),
    ])
    fig.update_layout(barmode="group", height=230, margin=dict(l=50, r=10, t=10, b=40), plot_bgcolor="white",
                      legend=dict(orientation="h", y=1.1, x=0))
    fig.update_yaxes(title="standardized saliency (z)", gridcolor="#eef1f4")
    fig.update_xaxes(title="the image's top filters (filter id)", type="category")
    return fig


def result(client: BackendClient, subject: Subject, percent: float, mode: str, top_k: int, boost: float):
    """(masked image, before/after panel)."""
    params = dict(percent=percent, mode=mode, top_k=top_k, boost=boost)
    try:
        answer = client.mask(subject, **params)
        png = client.mask_png(subject, **params)
        detail = client.sample(subject)
        names = detail.get("class_names") or client.info().get("classes", [])
    except BackendError as exc:
        failed = error_alert(exc, "the masked image")
        return failed, failed
    image = html.Img(src="data:image/png;base64," + base64.b64encode(png).decode("ascii"), className="big-img",
                     id=sid("mask-img"), alt=f"{percent}% of the pixels masked ({mode})")
    target = int(answer["target"]["class"])
    before, after = int(answer["before"]["pred"]), int(answer["after"]["pred"])
    mean_change = sum(f["z_after"] - f["z_before"] for f in answer["filters"]) / max(1, len(answer["filters"]))
    summary = html.Div([
        html.Span(f"{answer['masked_pixels']} pixels masked: ", className="prune-count"),
        html.Span(class_name(names, before), className="strike" if after != before else ""),
        html.Span(" → "), html.B(class_name(names, after)),
        html.Span(f" ({float(answer['after']['probs'][after]):.0%}); "),
        html.Span(f"{class_name(names, target)} {float(answer['before']['probs'][target]):.0%} → "
                  f"{float(answer['after']['probs'][target]):.0%}; top filters' z {mean_change:+.2f} on average"),
    ], className="prune-summary", id=sid("mask-summary"))
    probs = figures.probability_figure(names, answer["before"]["probs"], answer["after"]["probs"], detail.get("label"),
                                       change="masking")
    return image, [summary, dcc.Graph(figure=probs, config={"displayModeBar": False}, id=sid("mask-probs")),
                   dcc.Graph(figure=filters_figure(answer["filters"][:SHOWN_FILTERS]),
                             config={"displayModeBar": False}, id=sid("mask-filters"))]


def register(app, client: BackendClient) -> None:
    @app.callback(Output(sid("mask-image"), "children"), Output(sid("mask-result"), "children"),
                  Input(PERCENT, "value"), Input(MODE, "value"), Input(TOP_K, "value"), Input(BOOST, "value"),
                  State(sid("subject"), "data"))
    def _mask(percent_index, mode, top_k, boost_index, subject):
        boost = BOOSTS[int(boost_index)] if boost_index is not None else 100
        return result(client, subject_of(subject), MASK_PERCENTS[int(percent_index or 0)], mode or "salient",
                      int(top_k or 10), float(boost))
