"""Experiments: the paper's validation experiments on this model (written by `pss experiments`), so a user can
check that parameter saliency means something for *their* model before trusting the other pages."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from app import experiment_figures as figs
from app.client import BackendClient, BackendError
from app.components import alert, card, class_name, error_alert, page_heading
from app.pages import page

PREFIX = "experiments"
JOB = f"{PREFIX}-job"  # the running job's id (None: none)
STAMPS = f"{PREFIX}-stamps"  # each experiment's result time, to redraw only when a result is new
POLL = f"{PREFIX}-poll"
RUN_ALL = f"{PREFIX}-run-all"
CANCEL = f"{PREFIX}-cancel"
PROGRESS = f"{PREFIX}-progress"
STATUS = f"{PREFIX}-status"
SECTIONS = f"{PREFIX}-sections"
POLL_MS = 1000


def _pct(stat: dict, index: int | None = None) -> str:
    mean, low, high = (stat[k] if index is None else stat[k][index] for k in ("mean", "low", "high"))
    if mean is None:
        return "n/a"
    return f"{100 * mean:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _pts(stat: dict, index: int | None = None) -> str:
    mean, low, high = (stat[k] if index is None else stat[k][index] for k in ("mean", "low", "high"))
    if mean is None:
        return "n/a"
    return f"{100 * mean:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]"


def _rho(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"ρ {stat['mean']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}]"


def headline(name: str, doc: dict) -> str:
    """One sentence with the experiment's key numbers (95% bootstrap CIs in brackets)."""
    res, n = doc["results"], doc["num_samples"]
    if not n:
        return "No misclassified samples were used."
    if name in ("pruning", "perturbation"):
        ns = res["n"]
        i = ns.index(10) if 10 in ns else len(ns) // 2
        c = res["curves"]
        verb = "Pruning" if name == "pruning" else "Perturbing"
        return (f"{verb} the {ns[i]} most salient filters of each of {n} misclassified samples corrects "
                f"{_pct(c['salient']['corrected_fraction'], i)} of them and changes the true-class confidence by "
                f"{_pts(c['salient']['true_conf_change'], i)}; {ns[i]} random filters: "
                f"{_pct(c['random']['corrected_fraction'], i)}, {ns[i]} least salient: "
                f"{_pct(c['least']['corrected_fraction'], i)}.")
    if name == "neighbors":
        s = res["share"]
        return (f"Of the {doc['params']['k']} nearest misclassified neighbours, {_pct(s['saliency'])} share the "
                f"sample's confusion (or its reverse) in saliency space, {_pct(s['feature'])} in feature space, "
                f"against {_pct(s['chance'])} by chance ({n} samples).")
    if name == "finetuning":
        ns, c = res["n"], res["curves"]
        i = ns.index(25) if 25 in ns else len(ns) // 2
        return (f"One step on the {ns[i]} most salient filters corrects {_pct(c['salient']['sample_corrected'], i)} "
                f"of {n} samples and {_pct(c['salient']['neighbors_corrected'], i)} of their neighbours; "
                f"random filters: {_pct(c['random']['neighbors_corrected'], i)} of neighbours, least salient: "
                f"{_pct(c['least']['neighbors_corrected'], i)}, whole network: "
                f"{_pct(res['whole_network']['neighbors_corrected'])} (step size {doc['params']['step_size']}).")
    if name == "masking":
        p = doc["params"]["percent"]
        return (f"Masking the top {p:g}% input-saliency pixels changes the true-class confidence by "
                f"{_pts(res['salient']['true_conf_change'])} and the top filters' saliency by "
                f"{res['salient']['salient_filters_z_change']['mean']:+.2f} z; {p:g}% random pixels: "
                f"{_pts(res['random']['true_conf_change'])} and "
                f"{res['random']['salient_filters_z_change']['mean']:+.2f} z ({n} samples).")
    if name == "gradcam":
        rho = res["spearman"]
        text = (f"Spearman correlation between the input-space map and Grad-CAM: {rho['mean']:.2f} "
                f"[{rho['low']:.2f}, {rho['high']:.2f}]; overlap of their top 5% pixels: "
                f"{_pct(res['top_overlap'])} (chance {100 * res['chance_top_overlap']:.1f}%; {n} samples).")
        pairs = res.get("pairs")
        if pairs:
            control, own = pairs["input_gradient_vs_gradcam"], pairs["input_saliency_vs_input_gradient"]
            size = "x".join(str(v) for v in res.get("feature_size") or [])
            text += (f" Control, the plain input gradient vs Grad-CAM: {_rho(control['spearman'])}; at Grad-CAM's "
                     f"{size} resolution: {_rho(pairs['input_saliency_vs_gradcam']['spearman_feature_resolution'])} "
                     f"(input-space map) vs {_rho(control['spearman_feature_resolution'])} (input gradient). "
                     f"Input-space map vs input gradient: {_rho(own['spearman'])}.")
        return text
    rho = res["input_saliency_spearman"]["mean"]
    cam = res["gradcam_spearman"]["mean"]
    last = len(rho) - 1
    return (f"After randomizing the last stage, the input-space map's rank correlation with the original drops to "
            f"{rho[1]:.2f} (Grad-CAM: {cam[1]:.2f}); with every stage randomized: {rho[last]:.2f} "
            f"(Grad-CAM: {cam[last]:.2f}; {n} samples).")


def _ci(stat: dict, index: int | None = None) -> tuple[float, float] | None:
    low, high = (stat[k] if index is None else stat[k][index] for k in ("low", "high"))
    return None if low is None or high is None else (float(low), float(high))


def _compare(a: dict, b: dict, index: int | None = None) -> str:
    """"above", "below" or "overlap": where ``a``'s 95% interval lies against ``b``'s."""
    first, second = _ci(a, index), _ci(b, index)
    if first is None or second is None:
        return "overlap"
    return "above" if first[0] > second[1] else "below" if first[1] < second[0] else "overlap"


def verdict(name: str, doc: dict) -> tuple[str, bool]:
    """What the headline's numbers say, in words: (sentence, whether it supports the paper's claim). Only
    intervals that do not overlap count as a difference."""
    res = doc["results"]
    if name in ("pruning", "perturbation", "finetuning"):
        ns = res["n"]
        key = "neighbors_corrected" if name == "finetuning" else "corrected_fraction"
        i = (ns.index(25) if 25 in ns else len(ns) // 2) if name == "finetuning" else \
            (ns.index(10) if 10 in ns else len(ns) // 2)
        c = res["curves"]
        if _compare(c["salient"][key], c["random"][key], i) == "above":
            return "Supported: the most salient filters fix more mistakes than random ones.", True
        return "Not shown here: the salient filters do no better than random ones (intervals overlap).", False
    if name == "neighbors":
        s = res["share"]
        if _compare(s["saliency"], s["chance"]) == "above":
            return "Supported: saliency-space neighbours share the confusion more often than chance.", True
        return "Not shown here: saliency-space neighbours share the confusion no more than chance.", False
    if name == "masking":
        if _compare(res["salient"]["true_conf_change"], res["random"]["true_conf_change"]) == "above":
            return "Supported: masking the salient pixels helps the true class more than random pixels.", True
        return "Not shown here: masking salient pixels does no better than random pixels.", False
    if name == "gradcam":
        rho = _ci(res["spearman"])
        if rho is not None and rho[0] > 0:
            return "The input-space map agrees with Grad-CAM more than chance (positive rank correlation).", True
        return "No agreement with Grad-CAM beyond chance.", False
    rho = res["input_saliency_spearman"]
    last = len(rho["mean"]) - 1
    high = rho["high"][last] if rho.get("high") else rho["mean"][last]
    if high is not None and high < 0.5:
        return "Passed: randomizing the weights destroys the map, so it depends on what the model learned.", True
    return "Not passed: the map survives randomized weights, so it may reflect the image more than the model.", False


def explorer(doc: dict, names) -> html.Div:
    """The mistake explorer: samples that masking their salient pixels pushes towards the true class."""
    items = doc["results"].get("explorer", [])
    threshold = 100 * doc["params"]["explorer_threshold"]
    if not items:
        return html.P(f"No sample's true-class confidence rose by {threshold:.0f} points or more.", className="hint")
    rows = [html.Tr([html.Td(dcc.Link(f"#{e['id']}", href=f"/sample/{e['id']}", id=f"{PREFIX}-explorer-{e['id']}")),
                     html.Td(class_name(names, e["label"])), html.Td(class_name(names, e["pred"])),
                     html.Td(f"{100 * e['true_conf_before']:.1f}% → {100 * e['true_conf_after']:.1f}%"),
                     html.Td(class_name(names, e["pred_after"]))]) for e in items[:50]]
    header = html.Tr([html.Th(h) for h in ("sample", "true", "predicted", "true-class conf.", "after masking")])
    return html.Div([
        html.P(f"Mistake explorer: {len(items)} samples whose true-class confidence rises by ≥ {threshold:.0f} "
               "points when their salient pixels are masked" + (" (first 50)" if len(items) > 50 else ""),
               className="hint"),
        html.Table([html.Thead(header), html.Tbody(rows)], className="table", id=f"{PREFIX}-explorer"),
    ])


def run_button(name: str) -> html.Button:
    return html.Button("Run (quick)", id={"type": f"{PREFIX}-run", "name": name}, className="btn btn-small",
                       title=f"run the {name} experiment on a seeded subset of the mistakes, in the background")


def section(name: str, item: dict, doc: dict | None, names, error: BackendError | None = None,
            command: str | None = "pss experiments --artifacts DIR") -> html.Div:
    """One experiment's card; ``command``: how to run it in full, shown while it has no results (None where
    the page's empty-state card already says it)."""
    title = f"{item['title']} (paper {item['paper']})"
    run = run_button(name)
    if error is not None:
        body = [error_alert(error, f"the {name} results")]
    elif doc is None:
        body = [html.P(["Not run yet: press Run"] + ([", or run ", html.Code(f"{command} --which {name}")]
                                                      if command else ["."]), className="hint")]
    else:
        figure = figs.gradcam_figure(doc, names) if name == "gradcam" else figs.FIGURES[name](doc)
        sentence, supported = verdict(name, doc)
        body = [html.P(sentence, className=f"exp-verdict {'verdict-yes' if supported else 'verdict-no'}",
                       id=f"{PREFIX}-{name}-verdict"),
                html.P(headline(name, doc), className="exp-headline"),
                dcc.Graph(figure=figure, id=f"{PREFIX}-{name}-graph", config={"displaylogo": False}),
                html.P(["Measured with ", html.Code(doc["command"]), f" in {doc['seconds']:.0f} s."],
                       className="hint")]
        if name == "masking":
            body.append(explorer(doc, names))
    return card(title, *body, id=f"{PREFIX}-{name}", extra=run)


def sections(client: BackendClient, listing: dict, names, command: str | None = None) -> list:
    out = []
    for item in listing["experiments"]:
        doc, error = None, None
        if item["available"]:
            try:
                doc = client.experiments(item["name"])
            except BackendError as exc:
                error = exc
        out.append(section(item["name"], item, doc, names, error, command))
    return out


def stamps(listing: dict) -> dict:
    return {item["name"]: item.get("created") for item in listing["experiments"]}


def running_job(client: BackendClient) -> dict | None:
    """The experiment run going on now (e.g. the one `pss demo` starts), if any."""
    try:
        jobs = client.jobs("experiments")
    except BackendError:
        return None
    return next((j for j in jobs if j["state"] == "running"), None)


def run_bar(job: dict | None) -> html.Div:
    return html.Div([
        html.Button("Run all, quick", id=RUN_ALL, className="btn btn-primary",
                    title="every experiment on a seeded subset of the mistakes (about 3 minutes on the demo)"),
        html.Button("Cancel", id=CANCEL, className="btn", disabled=job is None),
        html.Progress(id=PROGRESS, max=1, value=job["progress"] if job else 0, className="run-progress",
                      style={} if job else {"display": "none"}),
        html.Span(status_text(job), id=STATUS, className="hint"),
    ], className="run-bar")


def status_text(job: dict | None) -> str:
    if job is None:
        return ""
    state = job["state"]
    if state == "running":
        return f"{job['title']}: {100 * job['progress']:.0f}%" + (f", {job['message']}" if job["message"] else "")
    if state == "failed":
        return f"{job['title']} failed: {job['error']}"
    return f"{job['title']}: {state}"


@page
def layout(client: BackendClient, info: dict, **_query) -> html.Div:
    names = list(info.get("classes", []))
    try:
        listing = client.experiments()
    except BackendError as exc:
        return html.Div([page_heading("Validation experiments"), error_alert(exc, "the experiments")], className="page")
    command = listing.get("command", "pss experiments --artifacts DIR")
    job = running_job(client)
    intro = html.P("The paper's checks that parameter saliency is meaningful, run on this model's misclassified "
                   "samples. Bands and brackets are 95% bootstrap confidence intervals.", className="hint")
    empty, shown = [], sections(client, listing, names, command)
    if not any(item["available"] for item in listing["experiments"]):
        # one box with the command once and a Run button per experiment; the cards appear as results land
        empty, shown = [card("No experiment has been run on this model yet",
                             html.P(["Press ", html.Strong("Run all, quick"), " (a seeded subset, minutes), or run "
                                     "all of them in full with ", html.Code(command), " (one with ",
                                     html.Code("--which NAME"), "), then reload this page. They are the paper's "
                                     "checks that parameter saliency means something for this model:"]),
                             html.Ul([html.Li([f"{item['title']} (paper {item['paper']}) ", run_button(item["name"])])
                                      for item in listing["experiments"]]),
                             id=f"{PREFIX}-empty")], []
    return html.Div([
        page_heading("Validation experiments"),
        dcc.Store(id=JOB, data=job["id"] if job else None),
        dcc.Store(id=STAMPS, data=stamps(listing)),
        dcc.Interval(id=POLL, interval=POLL_MS, disabled=job is None),
        intro, *empty, run_bar(job), html.Div(shown, id=SECTIONS),
    ], className=f"page page-{PREFIX}")


def start_or_cancel(client: BackendClient, trigger, job_id: str | None):
    """(job id, status): a Run button starts a quick run (refused while one runs), Cancel cancels it."""
    try:
        if trigger == CANCEL:
            if job_id:
                client.cancel_job(job_id)
            return job_id, "cancelling ..."
        name = "all" if trigger == RUN_ALL else trigger["name"]
        job = client.run_experiment(name, quick=True)
    except BackendError as exc:
        return job_id, f"could not start: {exc.message}"
    return job["id"], status_text(job)


def poll(client: BackendClient, job_id: str | None, known: dict):
    """(progress, progress style, status, polling off, cancel disabled, sections or no_update, stamps)."""
    try:
        job = client.job(job_id) if job_id else None
        listing = client.experiments()
    except BackendError as exc:
        return no_update, no_update, f"lost the run: {exc.message}", True, True, no_update, no_update
    running = job is not None and job["state"] == "running"
    fresh = stamps(listing)
    redraw = no_update
    if fresh != known:
        names = list(client.info().get("classes", []))
        redraw = sections(client, listing, names)
    return (job["progress"] if job else 0, {} if running else {"display": "none"}, status_text(job),
            not running, not running, redraw, fresh)


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/experiments", layout=layout)

    @app.callback(Output(JOB, "data"), Output(STATUS, "children", allow_duplicate=True),
                  Output(POLL, "disabled", allow_duplicate=True),
                  Input(RUN_ALL, "n_clicks"), Input({"type": f"{PREFIX}-run", "name": ALL}, "n_clicks"),
                  Input(CANCEL, "n_clicks"), State(JOB, "data"), prevent_initial_call=True)
    def _start(_all, _each, _cancel, job_id):
        if not ctx.triggered or not any(t["value"] for t in ctx.triggered):
            raise PreventUpdate  # a section redrawn with fresh buttons, not a click
        new_id, status = start_or_cancel(client, ctx.triggered_id, job_id)
        return new_id, status, new_id is None

    @app.callback(Output(PROGRESS, "value"), Output(PROGRESS, "style"), Output(STATUS, "children"),
                  Output(POLL, "disabled"), Output(CANCEL, "disabled"), Output(SECTIONS, "children"),
                  Output(STAMPS, "data"), Input(POLL, "n_intervals"), Input(JOB, "data"), State(STAMPS, "data"),
                  prevent_initial_call=True)
    def _poll(_n, job_id, known):
        return poll(client, job_id, known or {})
