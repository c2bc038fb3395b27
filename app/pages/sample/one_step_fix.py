"""Card: one gradient step of the image's own loss on its chosen filters only (paper 3.3, Fig. 6), and the
predictions of the image and of its nearest saliency-space mistakes before and after. The served model is
never changed; the step exists only for this answer."""

from __future__ import annotations

from dash import Input, Output, State, dcc, html

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import card, class_name, error_alert
from app.pages.sample.pruning import _flip_label, neighbour_rows
from app.pages.sample.view import FIX_STEPS, FIX_TOP_KS, View, sid, subject_of

TOP_K = sid("fix-k")
MODE = sid("fix-mode")
STEP = sid("fix-step")
NEIGHBOURS = 10


def layout(view: View):
    controls = card(
        "One-step fix",
        html.Div([html.Label("filters that take the step"),
                  dcc.Slider(id=TOP_K, min=0, max=len(FIX_TOP_KS) - 1, step=1,
                             value=FIX_TOP_KS.index(view.state["fix_top_k"]),
                             marks={i: str(k) for i, k in enumerate(FIX_TOP_KS)}, updatemode="mouseup",
                             allow_direct_input=False)], className="control"),
        html.Div([html.Label("chosen by"),
                  dcc.RadioItems(id=MODE, value=view.state["fix_mode"], inline=True, className="radio-row",
                                 options=[{"label": "most salient", "value": "salient"},
                                          {"label": "random", "value": "random"},
                                          {"label": "least salient", "value": "least"}])], className="control"),
        html.Div([html.Label("step size"),
                  dcc.RadioItems(id=STEP, value=view.state["fix_step"], inline=True, className="radio-row",
                                 options=[{"label": f"{s:g}", "value": s} for s in FIX_STEPS])], className="control"),
        html.P("One plain SGD step of this image's loss on the chosen filters' weights only (BatchNorm in eval "
               "mode). Random and least salient filters' steps are scaled to the salient filters' gradient norm, "
               "so only the choice of filters differs. If the salient filters are what goes wrong, the step "
               "should also fix the image's nearest mistakes in saliency space.", className="hint"),
        className="col-5", id=sid("fix-card"),
    )
    outcome = card("Prediction after one step",
                   dcc.Loading(html.Div(id=sid("fix-result")), type="dot", delay_show=150), className="col-7")
    return html.Div([controls, outcome], className="row")


def result(client: BackendClient, subject: Subject, top_k: int, mode: str, step: float):
    try:
        answer = client.finetune(subject, top_k=top_k, mode=mode, step=step, neighbors=NEIGHBOURS)
        detail = client.sample(subject)
    except BackendError as exc:
        return error_alert(exc, "the one-step fix")
    names = detail.get("class_names") or client.info().get("classes", [])
    label = detail.get("label")
    before, after = int(answer["before"]["pred"]), int(answer["after"]["pred"])
    flip, flip_class = _flip_label(label, before, after)
    summary = html.Div([
        html.Span(f"{len(answer['filters'])} {mode} filters, step {answer['step']:.3g}: ", className="prune-count"),
        html.Span(class_name(names, before), className="strike" if after != before else ""),
        html.Span(" → "), html.B(class_name(names, after)),
        html.Span(f" ({float(answer['after']['probs'][after]):.0%})"),
        html.Span(flip, className=f"flip {flip_class}"),
    ], className="prune-summary", id=sid("fix-summary"))
    probs = figures.probability_figure(names, answer["before"]["probs"], answer["after"]["probs"], label,
                                       change="the step")
    rows, fixed = neighbour_rows(names, answer["neighbors"])
    if not rows:
        return [summary, dcc.Graph(figure=probs, config={"displayModeBar": False})]
    table = html.Table([html.Thead(html.Tr([html.Th(""), html.Th("true"), html.Th("before"), html.Th("after"),
                                            html.Th("")])), html.Tbody(rows)], className="flip-table",
                       id=sid("fix-table"))
    neighbours = html.Details([html.Summary(f"Nearest mistakes in saliency space after the same step: {fixed} of "
                                            f"{len(rows)} fixed"), table], open=True, className="flip-details")
    return [summary, dcc.Graph(figure=probs, config={"displayModeBar": False}, id=sid("fix-probs")), neighbours]


def register(app, client: BackendClient) -> None:
    @app.callback(Output(sid("fix-result"), "children"), Input(TOP_K, "value"), Input(MODE, "value"),
                  Input(STEP, "value"), State(sid("subject"), "data"))
    def _fix(top_k_index, mode, step, subject):
        return result(client, subject_of(subject), FIX_TOP_KS[int(top_k_index or 0)], mode or "salient",
                      float(step or 0.001))
