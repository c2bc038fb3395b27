"""The Dash application: a header over Dash's page container (each page registers itself), and an image proxy.

Images are proxied through this server (``/media/...``) so the browser only ever talks to the UI, and the
backend can stay on an internal address.
"""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Input, Output, State, dcc, html, no_update
from flask import abort

from app.client import BackendClient, BackendError, Subject
from app.components import ITEM_ID, proxied_png
from app.pages import attach_client, confusion, experiments, gallery, not_found_404, overview, sample, upload
from app.pages import filter as filter_page
from app.pages import map as mistake_map

ASSETS = Path(__file__).resolve().parent.parent / "frontend_assets"
NAV = [("/", "Overview"), ("/mistakes", "Mistakes"), ("/upload", "Upload"), ("/experiments", "Experiments"),
       ("/map", "Map")]
PAGES = (overview, gallery, sample, upload, experiments, filter_page, confusion, mistake_map, not_found_404)
LOCATION = "_pages_location"
HEALTH_EVERY_MS = 5000  # how often the page asks whether the backend answers (faster while it does not)
RETRY_EVERY_MS = 2000  # the Location of dash.page_container: only real navigation changes it


def create_dash_app(backend_url: str, client: BackendClient | None = None) -> dash.Dash:
    """The dashboard for the backend at ``backend_url``; ``app.server`` is the Flask app to serve."""
    client = client or BackendClient(backend_url)
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS),
        title="Parameter-space saliency",
        update_title=None,
        suppress_callback_exceptions=True,
        use_pages=True,
        pages_folder="",  # the pages register themselves below, with this app's client
    )
    app.index_string = app.index_string.replace("<html>", '<html lang="en">', 1)
    attach_client(app.server, client)
    for page in PAGES:
        page.register(app, client)
    app.layout = html.Div(
        [
            # the gallery's last filters, so "back to the mistakes" returns to the same selection
            dcc.Store(id="gallery-memory", storage_type="session"),
            html.Div(id="backend-banner", className="banner is-hidden", role="status"),
            dcc.Interval(id="backend-poll", interval=HEALTH_EVERY_MS),
            dcc.Store(id="backend-down", data=False),
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
            html.Main(dcc.Loading(dash.page_container, type="default", delay_show=300,
                                  target_components={"_pages_content": "children"},
                                  parent_className="page-loading"), className="main"),
        ],
        className="shell",
    )

    # Pages write their controls into the URL through their own Location (refresh=False), which does not tell
    # the page container's: only real navigation (links, back/forward) re-renders a page, and back/forward
    # restores the state it leads to.
    @app.callback(Output("header-model", "children"), Input(LOCATION, "pathname"), Input("backend-down", "data"))
    def _model_badge(_, down):
        try:
            info = client.info()
        except BackendError:
            return html.Span("backend offline", className="chip chip-wrong")
        label = f"{info.get('model', '?')} · {info.get('dataset', '?')}"
        return html.Span(label, className="chip chip-muted", title=label)

    @app.callback(Output("backend-down", "data"), Output("backend-poll", "interval"),
                  Input("backend-poll", "n_intervals"), State("backend-down", "data"), prevent_initial_call=True)
    def _poll(_, was_down):
        try:
            client.health()
        except BackendError:
            return True, RETRY_EVERY_MS
        return (False if was_down else no_update), HEALTH_EVERY_MS

    # one banner while the backend does not answer; when it answers again the page reloads (its URL holds
    # its whole state), so every panel recovers without the user doing anything
    app.clientside_callback(
        """function(down) {
            if (down) {
                window.pssBackendWasDown = true;
                return ['The analysis server is unreachable, retrying…', 'banner'];
            }
            if (window.pssBackendWasDown) { window.location.reload(); }
            return ['', 'banner is-hidden'];
        }""",
        Output("backend-banner", "children"), Output("backend-banner", "className"), Input("backend-down", "data"),
        prevent_initial_call=True)

    app.clientside_callback(
        """function(path) {
            return %s.map(function(h) { var on = h === '/' ? path === '/' : (path || '').indexOf(h) === 0
                || (h === '/mistakes' && (path || '').indexOf('/sample/') === 0);
                return on ? 'nav-link active' : 'nav-link'; });
        }""" % [href for href, _ in NAV],
        [Output(f"nav-{label.lower()}", "className") for _, label in NAV],
        Input(LOCATION, "pathname"),
    )

    @app.server.route("/media/<kind>/<item_id>/image.png")
    def _media(kind: str, item_id: str):
        if kind not in ("samples", "uploads") or not ITEM_ID.match(item_id):
            abort(404)
        return proxied_png(lambda: client.image_png(Subject(kind, item_id)))

    return app
