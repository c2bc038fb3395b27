"""What a click on a filter (a bar, a profile point, or a row of the filters table, by keyboard) answers: the
samples where that filter is most salient. With the backend's filter index (``GET /api/filters/{index}``)
that covers the whole dataset; without one (404) it falls back to this sample's nearest mistakes and says so.
The answer sits under the bar chart, with a spinner, and the chosen bar is outlined.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dash
from dash import ALL, Input, Output, State, dcc, html

from app import figures
from app.client import BackendClient, BackendError, Subject
from app.components import alert, thumbnail
from app.figures import filter_name
from app.pages.sample.view import sid, subject_of

# the chosen filter id as text ("": none), also in the URL as ?filter=; an html.Data, since a dcc.Store that
# is a callback's input fires it when the page opens (one more round trip)
SELECTED = sid("selected-filter")
RESULT = sid("filter-mistakes")
PICK = sid("filter-pick")  # the filters table's buttons: {"type": PICK, "filter": id}
SHOWN = 12  # samples shown for a filter
FILTER_SEARCH_CANDIDATES = 40  # fallback: mistakes examined when looking for others sharing a salient filter
FILTER_RANK = 10  # fallback: "among the most salient filters" = within this many


def result_box(answer=None) -> dcc.Loading:
    """Where the answer goes; a link's ``?filter=`` comes with its answer already in the page."""
    return dcc.Loading(html.Div(answer, id=RESULT, className="filter-mistakes", **{"aria-live": "polite"}),
                       type="circle", delay_show=100)


def filter_page_registered() -> bool:
    """Whether a filter page (issue 12) is there to link to."""
    return any(str(p.get("path_template") or p.get("path", "")).startswith("/filter/")
               for p in dash.page_registry.values())


def filter_page_link(filter_id: int, text: str, **attrs):
    """A link to the filter's own page (None while no filter page is registered)."""
    if not filter_page_registered():
        return None
    return dcc.Link(text, href=f"/filter/{int(filter_id)}", className="btn btn-small filter-page-link", **attrs)


def samples_with_filter(client: BackendClient, subject: Subject, filter_id: int):
    """The answer for ``filter_id``: the dataset's samples where it is most salient, or the fallback."""
    try:
        info = client.info()
        layers = figures.parse_layers(info.get("layers"))
        names = info.get("classes", [])
        try:
            found = client.filter_detail(filter_id)
        except BackendError as exc:
            if exc.status != 404 or not 0 <= filter_id < (layers[-1][2] if layers else 0):
                raise
            return mistakes_with_filter(client, subject, filter_id, layers, names)
        top = [t for t in found.get("top_samples", []) if str(t["id"]) != str(subject.id)][:SHOWN]
        details = client.parallel(*(lambda t=t: client.sample(Subject("samples", str(t["id"]))) for t in top))
    except BackendError as exc:
        return alert(f"Could not search the samples with this filter: {exc.message}")
    name = filter_name(layers, filter_id)
    title = [html.B(f"Where {name} is most salient, in the whole dataset: "),
             html.Span(f"the top {len(top)} samples (filter id {filter_id}) "),
             filter_page_link(filter_id, f"open the page of {name} ›", id=sid("filter-page-link"))]
    tiles = [thumbnail(Subject("samples", str(t["id"])), names, d.get("label"), d["pred"],
                       caption=f"z {float(t['z']):.1f}", id_prefix=sid("fm")) for t, d in zip(top, details)]
    return html.Div([html.Div(title, className="strip-title"),
                     html.Div(tiles, className="strip") if tiles else alert("No samples listed.", "info")])


def mistakes_with_filter(client: BackendClient, subject: Subject, filter_id: int, layers, names):
    """Fallback: other mistakes that have ``filter_id`` among their ``FILTER_RANK`` most salient filters,
    among this sample's nearest mistakes in that filter's layer (the likeliest to share it), each checked."""
    layer = next(i for i, (_, start, stop) in enumerate(layers) if start <= filter_id < stop)
    try:
        hits = client.neighbors(subject, k=FILTER_SEARCH_CANDIDATES, layers=(layer, layer + 1), space="saliency",
                                misclassified_only=True)
        # the candidates' top filters are independent requests: ask for them side by side
        with ThreadPoolExecutor(max_workers=8) as pool:
            tops = list(pool.map(lambda hit: client.filters(Subject("samples", str(hit["id"])), top=FILTER_RANK),
                                 hits))
    except BackendError as exc:
        return alert(f"Could not search for mistakes with this filter: {exc.message}")
    found = []
    for hit, top in zip(hits, tops):
        rank = next((r for r, f in enumerate(top) if int(f["filter"]) == filter_id), None)
        if rank is not None:
            found.append((hit, rank, float(top[rank]["z"])))
    name = filter_name(layers, filter_id)
    title = html.Div([html.B(f"Mistakes with filter {name} among their top {FILTER_RANK}: "),
                      html.Span(f"{len(found)} of the {len(hits)} nearest mistakes in that layer "
                                "(this backend has no index of the whole dataset by filter, so only these "
                                "were searched) "),
                      filter_page_link(filter_id, f"open the page of {name} ›", id=sid("filter-page-link"))],
                     className="strip-title")
    if not found:
        return html.Div([title, alert("None of them share it.", "info")])
    tiles = [thumbnail(Subject("samples", str(hit["id"])), names, hit["label"], hit["pred"],
                       caption=f"rank {rank + 1}, z {z:.1f}", id_prefix=sid("fm")) for hit, rank, z in found]
    return html.Div([title, html.Div(tiles, className="strip")])


# which filter a click or a key press chose, decided in the browser (no round trip). Only user actions run
# it: the store it writes is what the search and the URL listen to, and Dash runs those after any callback
# that could write it, even one answering no_update (a round trip per page open)
_CHOOSE = """function(bar, profile, picks) {
    const changed = dash_clientside.callback_context.triggered.map(t => t.prop_id);
    const nothing = window.dash_clientside.no_update;
    if (changed.length !== 1) { return nothing; }
    const which = changed[0];
    const pointOf = click => {
        const p = click && click.points && click.points[0];
        if (!p) { return nothing; }
        const v = p.customdata !== undefined ? p.customdata : p.x;
        return String(Number(Array.isArray(v) ? v[0] : v));
    };
    if (which.startsWith('%(bar)s.')) { return pointOf(bar); }
    if (which.startsWith('%(profile)s.')) { return pointOf(profile); }
    if (which.startsWith('{')) { return String(JSON.parse(which.slice(0, which.lastIndexOf('.'))).filter); }
    return nothing;
}"""


def register(app, client: BackendClient, bars_graph: str, profile_graph: str) -> None:
    app.clientside_callback(_CHOOSE % {"bar": bars_graph, "profile": profile_graph}, Output(SELECTED, "value"),
                            Input(bars_graph, "clickData"), Input(profile_graph, "clickData"),
                            Input({"type": PICK, "filter": ALL}, "n_clicks"), prevent_initial_call=True)

    @app.callback(Output(RESULT, "children"), Input(SELECTED, "value"), State(sid("subject"), "data"),
                  prevent_initial_call=True)
    def _search(filter_id, subject):
        if not filter_id:
            return []
        return samples_with_filter(client, subject_of(subject), int(filter_id))

    # bring the answer into view once it is there
    app.clientside_callback(
        """function(children) {
            const box = document.getElementById('%s');
            if (box && children && (!Array.isArray(children) || children.length)) {
                box.scrollIntoView({block: 'nearest', behavior: 'smooth'});
            }
            return window.dash_clientside.no_update;
        }""" % RESULT,
        Output(sid("scrolled"), "data"), Input(RESULT, "children"), prevent_initial_call=True)
