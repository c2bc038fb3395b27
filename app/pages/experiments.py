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


def section(name: str, item: dict, doc: dict | None, names, error: BackendError | None = None) -> html.Div:
    title = f"{item['title']} (paper {item['paper']})"
    if error is not None:
        body = [error_alert(error, f"the {name} results")]
    elif doc is None:
        body = [alert(f"No results yet. Run `pss experiments --artifacts DIR --which {name}`.", "info")]
    else:
        figure = figs.gradcam_figure(doc, names) if name == "gradcam" else figs.FIGURES[name](doc)
        body = [html.P(headline(name, doc), className="exp-headline"),
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
    sections = []
    for item in listing["experiments"]:
        doc, error = None, None
        if item["available"]:
            try:
                doc = client.experiments(item["name"])
            except BackendError as exc:
                error = exc
        sections.append(section(item["name"], item, doc, names, error))
    intro = html.P("The paper's checks that parameter saliency is meaningful, run on this model's misclassified "
                   "samples. Bands and brackets are 95% bootstrap confidence intervals.", className="hint")
    return html.Div([page_heading("Validation experiments"), intro, *sections], className=f"page page-{PREFIX}")


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/experiments", layout=layout)
