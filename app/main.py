"""The Dash application: a header, a URL router over the pages, and an image proxy.

Images are proxied through this server (``/media/...``) so the browser only ever talks to the UI, and the
backend can stay on an internal address.
"""

from __future__ import annotations

import re
from pathlib import Path

import dash
from dash import Input, Output, dcc, html
from flask import Response, abort

from app.client import BackendClient, BackendError, Ref
from app.components import alert
from app.pages import experiments, gallery, overview, sample, upload

ASSETS = Path(__file__).resolve().parent.parent / "frontend_assets"
NAV = [("/", "Overview"), ("/mistakes", "Mistakes"), ("/upload", "Upload"), ("/experiments", "Experiments")]
_ID = re.compile(r"^[0-9]{1,20}$")


def route(client: BackendClient, pathname: str | None, search: str | None):
    """The page for a URL; a backend that cannot answer gives a message, never a blank page."""
    path = (pathname or "/").rstrip("/") or "/"
    try:
        info = client.info()
    except BackendError as exc:
        return html.Div([alert(f"The backend at {client.base_url} cannot answer: {exc.message}. "
                               "Start it with `pss serve --artifacts DIR`, then reload this page.")],
                        className="page")
    if path == "/":
        return overview.layout(client, info)
    if path == "/mistakes":
        return gallery.layout(client, info, search)
    if path == "/upload":
        return upload.layout(client, info)
    if path == "/experiments":
        return experiments.layout(client, info)
    match = re.fullmatch(r"/(sample|upload)/([^/]+)", path)
    if match and _ID.match(match.group(2)):
        kind = "samples" if match.group(1) == "sample" else "uploads"
        if kind == "samples" and int(match.group(2)) >= int(info.get("num_samples", 0)):
            return html.Div([alert(f"There is no sample {match.group(2)}: ids go from 0 to "
                                   f"{int(info.get('num_samples', 0)) - 1}.")], className="page")
        return sample.layout(client, info, Ref(kind, match.group(2)), search)
    return html.Div([alert(f"No page at {pathname}.", "warn"), dcc.Link("Go to the overview", href="/")],
                    className="page")


def create_dash_app(backend_url: str, client: BackendClient | None = None) -> dash.Dash:
    """The dashboard for the backend at ``backend_url``; ``app.server`` is the Flask app to serve."""
    client = client or BackendClient(backend_url)
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS),
        title="Parameter-space saliency",
        update_title=None,
        suppress_callback_exceptions=True,
    )
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            # the gallery's last filters, so "back to the mistakes" returns to the same selection
            dcc.Store(id="gallery-memory", storage_type="session"),
            html.Header(
                [
                    dcc.Link([html.Span("PSS", className="brand-mark"), html.Span("Where do models go wrong?")],
                             href="/", className="brand"),
                    html.Nav([dcc.Link(label, href=href, className="nav-link", id=f"nav-{label.lower()}")
                              for href, label in NAV], className="nav"),
                    html.Div(id="header-model", className="header-model"),
                ],
                className="topbar",
            ),
            # only a page change shows this spinner; the pages' own updates have their own
            html.Main(dcc.Loading(html.Div(id="page-content"), type="default", delay_show=300,
                                  target_components={"page-content": "children"},
                                  parent_className="page-loading"), className="main"),
        ],
        className="shell",
    )

    # Pages write their controls into the URL without telling this Location (refresh=False), so only real
    # navigation (links, back/forward) reaches here, and back/forward restores the state it leads to.
    @app.callback(Output("page-content", "children"), Input("url", "pathname"), Input("url", "search"))
    def _route(pathname, search):
        return route(client, pathname, search)

    @app.callback(Output("header-model", "children"), Input("url", "pathname"))
    def _model_badge(_):
        try:
            info = client.info()
        except BackendError:
            return html.Span("backend offline", className="chip chip-wrong")
        return html.Span(f"{info.get('model', '?')} · {info.get('dataset', '?')}", className="chip chip-muted")

    app.clientside_callback(
        """function(path) {
            return %s.map(function(h) { var on = h === '/' ? path === '/' : (path || '').indexOf(h) === 0
                || (h === '/mistakes' && (path || '').indexOf('/sample/') === 0);
                return on ? 'nav-link active' : 'nav-link'; });
        }""" % [href for href, _ in NAV],
        [Output(f"nav-{label.lower()}", "className") for _, label in NAV],
        Input("url", "pathname"),
    )

    for page in (overview, gallery, sample, upload):
        page.register(app, client)

    @app.server.route("/media/<kind>/<item_id>/image.png")
    def _media(kind: str, item_id: str):
        if kind not in ("samples", "uploads") or not _ID.match(item_id):
            abort(404)
        try:
            png = client.image_png(Ref(kind, item_id))
        except BackendError as exc:
            abort(exc.status if exc.status in (404, 422) else 502)
        return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return app
