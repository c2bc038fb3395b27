"""Sample view, for a dataset sample (``/sample/<id>``) or an upload (``/upload/<id>``): a header, then cards
(image and input-space saliency, the most salient filters, live pruning, the profile, the neighbours).

Each card is a module of this package with ``layout(view)`` and ``register(app, client)``; ``ROWS`` places them
by name, so a new card is a new module and one line there. The URL query mirrors the controls (``view.STATE``), so every state of the
page is a link that can be shared.
"""

from __future__ import annotations

import importlib
import json

import dash
from dash import Input, Output, State, dcc, html

from app.client import BackendClient, BackendError, Subject
from app.components import ITEM_ID, alert, class_name, error_alert, verdict_class
from app.pages import page
from app.pages.not_found_404 import not_found
from app.pages.sample import filter_search, input_map, masks, neighbours, one_step_fix, pruning
from app.pages.sample.view import BOOSTS, FIX_TOP_KS, MASK_PERCENTS, STATE, TOP_FILTERS, View, layer_span, sid

# the page's cards (modules of this package), top to bottom; cards that share a tuple sit side by side
ROWS = (
    ("target",),
    ("input_map", "salient_filters"),
    ("pruning",),
    ("masks",),
    ("one_step_fix",),
    ("profile",),
    ("neighbours",),
)
CARDS = tuple(tuple(importlib.import_module(f"{__name__}.{name}") for name in row) for row in ROWS)


@page
def sample_layout(client: BackendClient, info: dict, sample_id: str = "", **query) -> html.Div:
    return layout(client, info, "samples", sample_id, query)


@page
def upload_layout(client: BackendClient, info: dict, upload_id: str = "", **query) -> html.Div:
    return layout(client, info, "uploads", upload_id, query)


def layout(client: BackendClient, info: dict, kind: str, item_id: str, query) -> html.Div:
    """The page, with the cheap parts (header, salient filters, profile) already filled in so that only the
    expensive views (input saliency, neighbours, pruning) wait for a callback."""
    if not ITEM_ID.match(item_id):
        return not_found(f"/{'sample' if kind == 'samples' else 'upload'}/{item_id}")
    state = STATE.parse(query)
    subject = Subject(kind, item_id, state["target"])
    back = dcc.Link("‹ Mistakes" if kind == "samples" else "‹ Upload another image",
                    href="/mistakes" if kind == "samples" else "/upload", className="back-link", id=sid("back"))
    try:
        detail = client.sample(subject)
    except BackendError as exc:
        return html.Div([html.Div([back], className="page-title"), missing_message(exc, subject)], className="page")
    # the map is the slowest view: start it now, while the browser draws the page that will ask for it
    client.prefetch_input_saliency(subject, state["top_k"], state["boost"])
    calls = [lambda: client.filters(subject, top=TOP_FILTERS), lambda: client.profile(subject),
             lambda: typicality_notice(client, subject) if kind == "uploads" else None,
             lambda: None if state["filter"] is None else
             filter_search.samples_with_filter(client, subject, state["filter"])]
    try:
        filters, profile_data, notice, answer = client.parallel(*calls)
        view = View(subject, info, detail, state, filters, profile_data, filter_answer=answer)
    except BackendError as exc:
        view, notice = View(subject, info, detail, state, None, None, load_error=exc.message), None
    rows = [html.Div([card.layout(view) for card in row], className="row") if len(row) > 1 else row[0].layout(view)
            for row in CARDS]
    return html.Div(
        [
            dcc.Location(id=sid("location"), refresh=False),
            dcc.Store(id=sid("subject"), data={"kind": kind, "id": item_id, "target": subject.target}),
            dcc.Store(id=sid("filters"), data=view.filters),
            html.Div([back, html.Div(header(detail, view.class_names, subject), id=sid("header"),
                                     className="sample-header")], className="page-title"),
            notice,
            *rows,
        ],
        className="page page-sample",
    )


UNTYPICAL_PERCENTILE = 1.0  # below this percentile of the dataset's own similarity an upload counts as unlike it


def typicality_notice(client: BackendClient, subject: Subject):
    """A warning when an upload is unlike the dataset (None when it is not, or the backend cannot say)."""
    try:
        found = client.typicality(subject)
    except BackendError:
        return None
    if found["percentile"] >= UNTYPICAL_PERCENTILE:
        return None
    return alert(f"This image is unlike the dataset the model was trained and measured on: its closest dataset "
                 f"image in the model's feature space has cosine similarity {found['nn_similarity']:.2f}, lower "
                 f"than for {100 - found['percentile']:.1f}% of the dataset's own images. The prediction, its "
                 "confidence and the saliency views may mean little for it.", "warn")


def missing_message(exc: BackendError, subject: Subject) -> html.Div:
    if exc.status == 404 and subject.kind == "uploads":
        return alert("This upload is no longer on the server (uploads expire). Please upload the image again.")
    return error_alert(exc, f"{'upload' if subject.kind == 'uploads' else 'sample'} {subject.id}")


def header(detail: dict, names, subject: Subject) -> list:
    """Title, verdict, true and predicted class (with confidence) and loss of a sample or upload."""
    label, pred = detail.get("label"), int(detail["pred"])
    confidence = float(detail["probs"][pred])
    title = f"Sample #{subject.id}" if subject.kind == "samples" else "Uploaded image"
    if label is None:
        verdict = html.Span("no true label given", className="chip chip-muted")
    elif int(label) == pred:
        verdict = html.Span("correct", className="chip chip-correct")
    else:
        verdict = html.Span("misclassified", className="chip chip-wrong")
    parts = [html.H1(title), verdict]
    if label is not None:
        parts.append(html.Span(["true ", html.B(class_name(names, label))], className="chip"))
    parts.append(html.Span(["predicted ", html.B(class_name(names, pred)), f" ({confidence:.0%})"],
                           className=f"chip pred-{verdict_class(label, pred) if label is not None else 'muted'}"))
    if detail.get("loss") is not None:
        parts.append(html.Span(f"loss {float(detail['loss']):.3f}", className="chip chip-muted"))
    return parts


def url_search(controls: dict, num_layers: int, target: int | None = None) -> str:
    """The controls' values (and the explained class) -> the page's URL query: the exact filters switched off
    when they were ticked by hand, the random draw's seed, and the filter whose other mistakes are shown."""
    pruned = json.loads(controls.get("pruned") or "{}")
    selected = controls.get("selected")
    return STATE.build({
        "target": target,
        "off": tuple(pruned["filters"]) if pruned.get("hand") and pruned.get("filters") else None,
        "seed": int(pruned.get("seed") or 0) if controls["prune_mode"] == "random" else 0,
        "filter": int(selected) if selected else None,
        "top_k": controls["top_k"],
        "boost": BOOSTS[int(controls["boost_index"])],
        "layers": layer_span(controls["layers"], num_layers),
        "space": controls["space"],
        "misclassified_only": bool(controls["misclassified_only"]),
        "prune_top_k": controls["prune_top_k"] or 0,
        "prune_mode": controls["prune_mode"],
        "mask_percent": MASK_PERCENTS[int(controls["mask_index"])],
        "mask_mode": controls["mask_mode"],
        "fix_top_k": FIX_TOP_KS[int(controls["fix_index"])],
        "fix_mode": controls["fix_mode"],
        "fix_step": controls["fix_step"],
    })


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path_template="/sample/<sample_id>", layout=sample_layout)
    dash.register_page(f"{__name__}.uploads", path_template="/upload/<upload_id>", layout=upload_layout)
    for row in CARDS:
        for card in row:
            card.register(app, client)

    app.clientside_callback(
        "function(subject, search) { return subject.kind === 'uploads' ? '/upload' : '/mistakes' + (search || ''); }",
        Output(sid("back"), "href"), Input(sid("subject"), "data"), State("gallery-memory", "data"))

    @app.callback(Output(sid("location"), "search"),
                  inputs={"top_k": Input(input_map.TOP_K, "value"), "boost_index": Input(input_map.BOOST, "value"),
                          "layers": Input(neighbours.LAYERS, "value"), "space": Input(neighbours.SPACE, "value"),
                          "misclassified_only": Input(neighbours.MISCLASSIFIED_ONLY, "value"),
                          "prune_top_k": Input(pruning.TOP_K, "value"), "prune_mode": Input(pruning.MODE, "value"),
                          "pruned": Input(pruning.PRUNED, "value"), "selected": Input(filter_search.SELECTED, "value"),
                          "mask_index": Input(masks.PERCENT, "value"), "mask_mode": Input(masks.MODE, "value"),
                          "fix_index": Input(one_step_fix.TOP_K, "value"), "fix_mode": Input(one_step_fix.MODE, "value"),
                          "fix_step": Input(one_step_fix.STEP, "value")},
                  state={"subject": State(sid("subject"), "data")}, prevent_initial_call=True)
    def _url(subject, **controls):
        return url_search(controls, len(client.info().get("layers", [])), subject.get("target"))
