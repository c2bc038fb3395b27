"""Upload: drop or pick an image (optionally with its true class) and open the sample view for it.
A file the backend refuses gets its reason next to the drop zone; the page keeps working."""

from __future__ import annotations

import base64
import binascii

import dash
from dash import Input, Output, State, dcc, html, no_update

from app.client import BackendClient, BackendError
from app.components import alert, card, page_heading
from app.pages import page

PREFIX = "upload"
MAX_BYTES = 10 * 1024 * 1024


@page
def layout(client: BackendClient, info: dict, **_query) -> html.Div:
    names = list(info.get("classes", []))
    return html.Div(
        [
            page_heading("Upload an image"),
            dcc.Location(id=f"{PREFIX}-nav", refresh="callback-nav"),
            card(
                "Analyse your own image",
                html.P(f"The image is preprocessed like the dataset ({info.get('dataset', '?')}) and run through "
                       f"{info.get('model', 'the model')}. PNG, JPEG or WebP, up to 10 MB."
                       + (" Fashion-MNIST shows light garments on a black background; images are not inverted."
                          if str(info.get("dataset", "")).startswith("fashion-mnist") else ""), className="hint"),
                html.Div(
                    [
                        html.Label("True class (optional, set it before dropping the file)",
                                   htmlFor=f"{PREFIX}-label"),
                        dcc.Dropdown(id=f"{PREFIX}-label", options=[{"label": n, "value": i}
                                                                      for i, n in enumerate(names)],
                                     placeholder="unknown: explain the predicted class", clearable=True),
                    ],
                    className="control upload-label",
                ),
                dcc.Upload(
                    id=f"{PREFIX}-drop",
                    children=html.Div([html.Div("⇪", className="drop-icon"),
                                       html.Div(["Drag and drop an image here, or ",
                                                 html.Button("choose a file", type="button", id=f"{PREFIX}-choose",
                                                             className="link-button")])]),
                    className="dropzone",
                    className_active="dropzone dropzone-active",
                    multiple=False,
                ),
                dcc.Loading(html.Div(id=f"{PREFIX}-status", className="upload-status"), type="dot"),
                className="upload-card",
            ),
        ],
        className="page page-upload",
    )


def decode_contents(contents: str) -> bytes:
    """A ``data:...;base64,...`` URL from dcc.Upload -> the file's bytes."""
    try:
        _, encoded = contents.split(",", 1)
        return base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("the browser sent the file in a form that cannot be read") from None


def handle_upload(client: BackendClient, contents: str | None, filename: str | None, label):
    """-> (status message, URL to go to or None)."""
    if not contents:
        return alert("That file is empty."), None
    try:
        data = decode_contents(contents)
    except ValueError as exc:
        return alert(str(exc)), None
    if len(data) > MAX_BYTES:
        return alert(f"“{filename}” is {len(data) / 2**20:.1f} MB; at most 10 MB are accepted."), None
    try:
        result = client.upload(filename or "upload", data, None if label is None else int(label))
    except BackendError as exc:
        return alert(f"“{filename}” was not accepted: {exc.message}"), None
    return alert(f"“{filename}” uploaded; opening its analysis…", "info"), f"/upload/{result['id']}"


def register(app, client: BackendClient) -> None:
    dash.register_page(__name__, path="/upload", layout=layout)

    @app.callback(
        Output(f"{PREFIX}-status", "children"),
        Output(f"{PREFIX}-nav", "href"),
        Input(f"{PREFIX}-drop", "contents"),
        State(f"{PREFIX}-drop", "filename"),
        State(f"{PREFIX}-label", "value"),
        prevent_initial_call=True,
    )
    def _upload(contents, filename, label):
        message, href = handle_upload(client, contents, filename, label)
        return message, href or no_update
