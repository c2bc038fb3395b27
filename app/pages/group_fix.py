"""Panel "Fix this kind of mistake": prune, or take one gradient step on, the filters a group of mistakes
shares (paper 3.3 applied to a group), and show what that does to the group, to its nearest other mistakes and
to the whole dataset, so a fix for one kind of mistake that breaks the rest is seen at once. The patched
weights are a download; the served model never changes.

Reusable by any page with a group (a confusion pair, a failure mode, a selection): ``layout(prefix, group)``
places it with ids ``<prefix>-fix-...``, ``register(app, client, prefix)`` once per prefix wires it.
``group`` is the body the group routes take, e.g. ``{"confusion": [3, 5]}`` or ``{"sample_ids": [...]}``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import flask
from dash import Input, Output, State, dcc, html, no_update

from app import figures
from app.client import BackendClient, BackendError
from app.components import alert, card, error_alert

INTERVENTIONS = {"prune": "switch them off (prune)", "finetune": "one gradient step (fine-tune)"}
MODES = {"salient": "most salient", "random": "random", "least": "least salient"}
TOP_KS = (1, 5, 10, 25, 50, 100)
STEPS = (0.0001, 0.001, 0.01, 0.1)
NEIGHBOURS = 10
POLL_MS = 1000
DOWNLOAD_PATH = "/download/group-weights.safetensors"
GROUP_KEYS = ("confusion", "sample_ids", "failure_mode")


def ids(prefix: str) -> dict[str, str]:
    """The panel's element ids under ``prefix``."""
    return {name: f"{prefix}-fix-{name}" for name in
            ("group", "intervention", "top-k", "mode", "step", "run", "answer", "poll", "result", "download",
             "status")}


def layout(prefix: str, group: dict, title: str = "Fix this kind of mistake", className: str = "") -> html.Div:
    """The controls above the outcome, so the panel also fits a narrow column."""
    i = ids(prefix)
    controls = html.Div([
        dcc.Store(id=i["group"], data=group),
        dcc.Store(id=i["answer"]),
        dcc.Interval(id=i["poll"], interval=POLL_MS, disabled=True),
        _choice("change", i["intervention"], "prune", INTERVENTIONS),
        _choice("how many of the filters the group shares", i["top-k"], 10, {k: str(k) for k in TOP_KS}),
        _choice("chosen by", i["mode"], "salient", MODES),
        _choice("step size (fine-tune only)", i["step"], 0.001, {s: f"{s:g}" for s in STEPS}),
        html.Div([html.Button("Run", id=i["run"], n_clicks=0, className="btn btn-primary",
                              title="apply the change to a copy of the model and re-evaluate"),
                  html.A("download the patched weights (.safetensors)", id=i["download"], download="",
                         href=export_href(group, "prune", top_k=10, mode="salient", step=0.001),
                         title="the model with this change, loadable with checkpoint:FILE:ARCH")],
                 className="mode-row"),
        html.P("The filters are the ones with the highest mean standardized saliency over the group's mistakes "
               "(random and least salient: controls). Pruning sets their weights to zero; fine-tuning takes one "
               "plain SGD step of the group's loss on their weights only. Both act on a copy: the served model "
               "never changes.", className="hint"),
    ])
    # one spinner while the change is computed (status) and while the outcome is drawn
    outcome = dcc.Loading(html.Div([html.Div(id=i["status"], role="status"), html.Div(id=i["result"])]),
                          type="dot", delay_show=150)
    return card(title, controls, outcome, id=f"{prefix}-fix-card", className=className)


def _choice(label: str, element_id: str, value, options: dict) -> html.Div:
    """A labelled row of radio buttons (``options``: value -> label)."""
    return html.Div([html.Label(label),
                     dcc.RadioItems(id=element_id, value=value, inline=True, className="radio-row",
                                    options=[{"label": text, "value": key} for key, text in options.items()])],
                    className="control")


def export_href(group: dict, intervention: str, *, top_k: int, mode: str, step: float, seed: int = 0) -> str:
    """The UI server's download URL of the patched weights for this group and change."""
    query = {"intervention": intervention, "top_k": int(top_k), "mode": mode, "step": f"{float(step):g}",
             "seed": int(seed)}
    for key in GROUP_KEYS:
        if group.get(key) is not None:
            value = group[key]
            query[key] = ",".join(str(int(v)) for v in value) if isinstance(value, list | tuple) else int(value)
    return f"{DOWNLOAD_PATH}?{urlencode(query, safe=',')}"


def parse_export_query(args) -> tuple[str, dict, dict]:
    """``export_href``'s query back as (intervention, group, parameters); ValueError says what is wrong."""
    intervention = args.get("intervention", "")
    if intervention not in INTERVENTIONS:
        raise ValueError(f"intervention must be one of {', '.join(INTERVENTIONS)}")
    group = {}
    for key in GROUP_KEYS:
        if args.get(key):
            numbers = [int(v) for v in args[key].split(",")]
            group[key] = numbers[0] if key == "failure_mode" else numbers
    if len(group) != 1:
        raise ValueError(f"give exactly one of {', '.join(GROUP_KEYS)}")
    mode = args.get("mode", "salient")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    params = {"top_k": int(args.get("top_k", 10)), "mode": mode, "step": float(args.get("step", 0.001)),
              "seed": int(args.get("seed", 0))}
    return intervention, group, params


def file_name(group: dict, intervention: str, top_k: int, mode: str) -> str:
    if group.get("confusion") is not None:
        what = "confusion-{}-{}".format(*group["confusion"])
    elif group.get("failure_mode") is not None:
        what = f"mode-{group['failure_mode']}"
    else:
        what = f"group-of-{len(group.get('sample_ids') or [])}"
    return f"pss-{what}-{intervention}-top{top_k}-{mode}.safetensors"


def run(client: BackendClient, group: dict, intervention: str, top_k: int, mode: str, step: float):
    """(answer or None, status message): the change applied to a copy of the model and re-evaluated."""
    try:
        answer = client.group_intervention(intervention, group, top_k=top_k, mode=mode, step=step,
                                           neighbors=NEIGHBOURS)
    except BackendError as exc:
        return None, error_alert(exc, "the group's what-if")
    return {**answer, "mode": mode, "dataset_progress": 0.0}, None


def poll(client: BackendClient, answer: dict) -> tuple[dict, bool]:
    """(answer with the dataset job's progress or result, whether polling is over)."""
    try:
        job = client.job(answer["dataset_job"])
    except BackendError as exc:
        return {**answer, "dataset_error": exc.message}, True
    if job["state"] == "running":
        return {**answer, "dataset_progress": float(job["progress"])}, False
    if job["state"] == "done":
        return {**answer, "dataset_accuracy": job["result"], "dataset_progress": 1.0}, True
    return {**answer, "dataset_error": job.get("error") or f"the evaluation was {job['state']}"}, True


def _change(before: float, after: float) -> html.Td:
    points = 100 * (after - before)
    kind = "change-up" if points > 0.05 else ("change-down" if points < -0.05 else "change-none")
    return html.Td(f"{points:+.1f} pts", className=kind)


def _row(what: str, accuracy: dict | None, row_id: str, pending=None) -> html.Tr:
    if accuracy is None:
        return html.Tr([html.Th(what, scope="row"), html.Td(pending, colSpan=3)], id=row_id)
    before, after = float(accuracy["before"]), float(accuracy["after"])
    return html.Tr([html.Th(what, scope="row"), html.Td(f"{before:.1%}"), html.Td(f"{after:.1%}"),
                    _change(before, after)], id=row_id)


def outcome(answer: dict | None, layers: figures.Layers, num_samples: int, prefix: str):
    """The accuracies before/after (the dataset's pending with a progress bar while its job runs) and the
    filters that were changed, each linking to its page."""
    if not answer:
        return alert("Choose a change and press Run: the group, its nearest other mistakes and the whole "
                     "dataset are re-evaluated with it.", "info")
    group, neighbours = answer["group"], answer["neighbors"]
    if answer.get("dataset_error"):
        pending = alert(f"The whole-dataset evaluation did not finish: {answer['dataset_error']}")
    else:
        progress = float(answer.get("dataset_progress") or 0.0)
        pending = html.Span([html.Progress(max=1, value=progress, className="run-progress",
                                           id=f"{prefix}-fix-progress"),
                             f" evaluating all {num_samples:,} samples… {progress:.0%}"])
    table = html.Table([
        html.Thead(html.Tr([html.Th("accuracy of", scope="col"), html.Th("before", scope="col"),
                            html.Th("after", scope="col"), html.Th("change", scope="col")])),
        html.Tbody([
            _row(f"this group ({len(group):,} samples)", answer["group_accuracy"], f"{prefix}-fix-group-row"),
            _row(f"its {len(neighbours)} nearest other mistakes", answer.get("neighbors_accuracy"),
                 f"{prefix}-fix-neighbours-row", "no other mistakes"),
            _row(f"the whole dataset ({num_samples:,} samples)", answer.get("dataset_accuracy"),
                 f"{prefix}-fix-dataset-row", pending),
        ]),
    ], className="flip-table", id=f"{prefix}-fix-table")
    fixed = sum(r["after"]["pred"] == r["label"] != r["before"]["pred"] for r in group)
    verb = "switched off" if answer["intervention"] == "prune" else "stepped"
    names = [dcc.Link(figures.filter_name(layers, f), href=f"/filter/{f}", className="chip")
             for f in answer["filters"]]
    return [
        html.P(f"{len(answer['filters'])} {MODES.get(answer.get('mode'), '')} filters {verb}: {fixed} of the "
               f"group's {len(group):,} samples now predicted right.", id=f"{prefix}-fix-summary"),
        table,
        html.Details([html.Summary(f"the {len(names)} filters changed"), html.Div(names, className="chip-row")],
                     className="flip-details"),
    ]


def register(app, client: BackendClient, prefix: str) -> None:
    i = ids(prefix)
    _register_download(app.server, client)
    controls = [State(i[k], "value") for k in ("intervention", "top-k", "mode", "step")]

    @app.callback(Output(i["answer"], "data"), Output(i["status"], "children"), Output(i["poll"], "disabled"),
                  Input(i["run"], "n_clicks"), State(i["group"], "data"), *controls, prevent_initial_call=True,
                  running=[(Output(i["run"], "disabled"), True, False)])
    def _run(_clicks, group, intervention, top_k, mode, step):
        answer, status = run(client, group, intervention, int(top_k), mode, float(step))
        if answer is None:  # refused (e.g. the last run's dataset evaluation still going): keep what is shown
            return no_update, status, no_update
        return answer, None, not (answer.get("dataset_job") and answer.get("dataset_accuracy") is None)

    @app.callback(Output(i["answer"], "data", allow_duplicate=True),
                  Output(i["poll"], "disabled", allow_duplicate=True),
                  Input(i["poll"], "n_intervals"), State(i["answer"], "data"), prevent_initial_call=True)
    def _poll(_n, answer):
        if not answer or not answer.get("dataset_job") or answer.get("dataset_accuracy") is not None:
            return no_update, True
        return poll(client, answer)

    @app.callback(Output(i["result"], "children"), Input(i["answer"], "data"))
    def _show(answer):
        try:
            info = client.info()
        except BackendError as exc:
            return error_alert(exc, "the model's layers")
        return outcome(answer, figures.parse_layers(info.get("layers")), int(info.get("num_samples", 0)), prefix)

    @app.callback(Output(i["download"], "href"), Input(i["group"], "data"), *[Input(c.component_id, "value")
                                                                                 for c in controls])
    def _href(group, intervention, top_k, mode, step):
        return export_href(group, intervention, top_k=int(top_k), mode=mode, step=float(step))


def _register_download(server: flask.Flask, client: BackendClient) -> None:
    """The download route on the UI server (once, whichever page registers first): the browser saves the
    backend's safetensors answer as a file, without passing it through a callback."""
    if "pss_group_weights" in server.view_functions:
        return

    def pss_group_weights():
        try:
            intervention, group, params = parse_export_query(flask.request.args)
        except ValueError as exc:
            return flask.Response(f"bad download link: {exc}", status=400, mimetype="text/plain")
        try:
            data = client.group_export(intervention, group, **params)
        except BackendError as exc:
            status = exc.status if exc.status and 400 <= exc.status < 500 else 502
            return flask.Response(f"could not export the weights: {exc.message}", status=status,
                                  mimetype="text/plain")
        name = file_name(group, intervention, params["top_k"], params["mode"])
        return flask.Response(data, mimetype="application/octet-stream",
                              headers={"Content-Disposition": f'attachment; filename="{name}"'})

    server.add_url_rule(DOWNLOAD_PATH, "pss_group_weights", pss_group_weights)
