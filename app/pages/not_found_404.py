"""What any URL without a page shows (Dash's router uses the page registered under this module name)."""

from __future__ import annotations

import dash
from dash import dcc, html

from app.components import alert, page_heading


def not_found(pathname: str | None) -> html.Div:
    return html.Div([page_heading("Page not found"), alert(f"No page at {pathname}.", "warn"),
                     dcc.Link("Go to the overview", href="/")],
                    className="page")


def layout(**_query) -> html.Div:
    # Dash passes a 404 layout only the query; the router's own input has the path
    return not_found(dash.ctx.inputs.get("_pages_location.pathname"))


def register(app, client) -> None:
    dash.register_page(__name__, path="/404", layout=layout)
