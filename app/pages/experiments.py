"""Experiments: the paper's validation experiments on this model (written by `pss experiments`), so a user can
check that parameter saliency means something for *their* model before trusting the other pages."""

from __future__ import annotations

import dash
from dash import dcc, html

from app import experiment_figures as figs
from app.client import BackendClient, BackendError
from app.components import alert, card, class_name, error_alert, page_heading
from app.pages import page

PREFIX = "experiments"


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
        return (f"Spearman correlation between the input-space map and Grad-CAM: {rho['mean']:.2f} "
                f"[{rho['low']:.2f}, {rho['high']:.2f}]; overlap of their top 5% pixels: "
                f"{_pct(res['top_overlap'])} (chance {100 * res['chance_top_overlap']:.1f}%; {n} samples).")
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


def section(name: str, item: dict, doc: dict | None, names, error: BackendError | None = None,
            command: str = "pss experiments --artifacts DIR") -> html.Div:
    title = f"{item['title']} (paper {item['paper']})"
    if error is not None:
        body = [error_alert(error, f"the {name} results")]
    elif doc is None:
        body = [html.P(["Not run yet: ", html.Code(f"{command} --which {name}")], className="hint")]
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
    return card(title, *body, id=f"{PREFIX}-{name}")


@page
def layout(client: BackendClient, info: dict, **_query) -> html.Div:
    names = list(info.get("classes", []))
    try:
        listing = client.experiments()
    except BackendError as exc:
        return html.Div([page_heading("Validation experiments"), error_alert(exc, "the experiments")], className="page")
    command = listing.get("command", "pss experiments --artifacts DIR")
    heading = page_heading("Validation experiments")
    if not any(item["available"] for item in listing["experiments"]):
        return html.Div([heading, card(
            "No experiment has been run on this model yet",
            html.P(["Run all of them with ", html.Code(command), " (or one with ", html.Code("--which NAME"),
                    "), then reload this page. They are the paper's checks that parameter saliency means "
                    "something for this model:"]),
            html.Ul([html.Li(f"{item['title']} (paper {item['paper']})") for item in listing["experiments"]]),
            id=f"{PREFIX}-empty")], className=f"page page-{PREFIX}")
    sections = []
    for item in listing["experiments"]:
        doc, error = None, None
        if item["available"]:
            try:
                doc = client.experiments(item["name"])
            except BackendError as exc:
                error = exc
        sections.append(section(item["name"], item, doc, names, error, command))
    intro = html.P("The paper's checks that parameter saliency is meaningful, run on this model's misclassified "
                   "samples. Bands and brackets are 95% bootstrap confidence intervals.", className="hint")
    return html.Div([heading, intro, *sections], className=f"page page-{PREFIX}")


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/experiments", layout=layout)
