"""Card: which class the page explains ("why not class X?"). The profile, map, filters, neighbours and the
what-ifs all take the loss against that class; whenever it is not the true label, this card says so first."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from dash import Input, Output, State, dcc, html, no_update

from app.client import BackendClient, BackendError, Subject
from app.components import alert, card, class_name
from app.pages.sample.view import View, sid

SELECT = sid("target")
LOCATION = sid("target-location")
LABEL, PREDICTED = "label", "predicted"


def layout(view: View):
    detail, names = view.detail, view.class_names
    label, pred = detail.get("label"), int(detail["pred"])
    target = detail.get("target") or {"class": detail.get("saliency_label", pred), "source": "label"}
    options = ([{"label": f"the true label ({class_name(names, label)})", "value": LABEL}] if label is not None else [])
    options.append({"label": f"the predicted class ({class_name(names, pred)})", "value": PREDICTED})
    options += [{"label": f"class {class_name(names, c)}", "value": str(c)} for c in range(len(names))
                if c not in (label, pred)]
    value = LABEL if target["source"] == "label" else PREDICTED if int(target["class"]) == pred else str(target["class"])
    selector = html.Div([html.Label("explain against"),
                         dcc.Dropdown(id=SELECT, options=options, value=value, clearable=False, searchable=False)],
                        className="control target-control")
    return card("Explained class", statement(detail, names, target), selector,
                dcc.Location(id=LOCATION, refresh=True), id=sid("target-card"),
                className="target-card" + ("" if target["source"] == "label" else " target-card-alt"))


def statement(detail: dict, names, target: dict):
    """What the profile is computed against, and what that means for comparing it."""
    label, chosen = detail.get("label"), class_name(names, target["class"])
    if label is None:
        return alert(f"This upload has no true label, so everything on this page is computed against the "
                     f"predicted class ({chosen}) or the class chosen here. It explains why the model is confident, "
                     f"not what went wrong, and is not comparable with the dataset's mistakes (whose profiles are "
                     f"against their true labels). Upload it again with its label to explain a mistake.", "warn")
    if target["source"] == "label":
        return html.P(f"Profiles, maps and what-ifs take the loss against the true label ({chosen}), as in the "
                      f"paper. Pick another class to ask \"why not {chosen}?\" from its point of view.", className="hint")
    return alert(f"Explaining against {chosen} ({'the predicted class' if target['source'] == 'predicted' else 'a chosen class'}), "
                 f"not the true label ({class_name(names, label)}): the profile, salient filters, input-space map, "
                 f"neighbours and what-ifs below answer \"what would have to change for the model to say {chosen}?\" "
                 "and are not comparable with the dataset's stored profiles.", "warn")


def target_href(pathname: str, search: str, value: str, label, pred: int) -> str:
    """The page's URL with ``target`` set to the chosen class (or removed for the true label)."""
    query = [(k, v) for k, v in parse_qsl((search or "").lstrip("?")) if k != "target"]
    target = None if value == LABEL else pred if value == PREDICTED else int(value)
    if target is not None and target != (pred if label is None else label):
        query.append(("target", str(target)))
    return pathname + (f"?{urlencode(query, safe=':')}" if query else "")


def register(app, client: BackendClient) -> None:
    @app.callback(Output(LOCATION, "href"), Input(SELECT, "value"), State(LOCATION, "pathname"),
                  State(LOCATION, "search"), State(sid("subject"), "data"), prevent_initial_call=True)
    def _choose(value, pathname, search, subject):
        try:
            detail = client.sample(Subject(subject["kind"], str(subject["id"])))
        except BackendError:
            return no_update
        return target_href(pathname or "", search or "", value, detail.get("label"), int(detail["pred"]))
