"""The dashboard's pages. Each module registers itself with Dash's pages feature (``register(app, client)``:
``dash.register_page`` plus its callbacks); ``app.main.PAGES`` lists them.

Dash keeps one page registry per process, so a layout cannot close over one app's client: ``page`` looks it up
on the app that serves the request.
"""

from __future__ import annotations

import functools

import flask
from dash import html

from app.client import BackendClient, BackendError
from app.components import alert, page_heading

CLIENT_KEY = "pss_backend_client"


def attach_client(server: flask.Flask, client: BackendClient) -> None:
    server.extensions[CLIENT_KEY] = client


def page(render):
    """A page layout for Dash's router: ``render(client, info, **path_and_query)``, or one message in its
    place when the backend cannot answer (never a blank page)."""

    @functools.wraps(render)
    def layout(**kwargs):
        client: BackendClient = flask.current_app.extensions[CLIENT_KEY]
        try:
            info = client.info()
        except BackendError as exc:
            return html.Div([page_heading("The analysis server cannot answer"),
                             alert(f"The analysis server cannot answer: {exc.message}. If you run it yourself, "
                                   "start it with `pss serve --artifacts <your artifacts folder>`; this page "
                                   "reloads by itself once it answers.")],
                            className="page")
        return render(client, info, **kwargs)

    return layout
