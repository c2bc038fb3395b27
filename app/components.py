"""Small building blocks shared by the pages: messages, cards, thumbnails, class names."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from urllib.parse import quote

from dash import ctx, dcc, html
from flask import Response, abort

from app.client import BackendError, Subject


ITEM_ID = re.compile(r"^[0-9]{1,20}$")  # a sample's or an upload's id in a URL


def lone_trigger() -> str | None:
    """The id of the one input that changed, or None when several did: when Dash's router inserts a page every
    input counts as changed, and the first of them is no user action."""
    changed = list(ctx.triggered_prop_ids.values())
    return changed[0] if len(changed) == 1 else None


def class_name(names: Sequence[str], index) -> str:
    """A class index as its name; falls back to the number when the backend sent no names."""
    try:
        i = int(index)
    except (TypeError, ValueError):
        return "?"
    return str(names[i]) if 0 <= i < len(names) else str(i)


def alert(message: str, kind: str = "error") -> html.Div:
    """A readable message box (``error``, ``warn`` or ``info``) in place of the content that failed."""
    return html.Div(message, className=f"alert alert-{kind}", role="alert")


def page_heading(text: str) -> html.H1:
    """The page's one h1, for screen readers (pages whose visible title is the top bar's)."""
    return html.H1(text, className="visually-hidden")


def error_alert(exc: BackendError, what: str) -> html.Div:
    status = f" (HTTP {exc.status})" if exc.status else ""
    return alert(f"Could not load {what}: {exc.message}{status}")


def card(title, *children, className: str = "", id: str | None = None, extra=None, level: int = 3) -> html.Div:
    """A titled panel; ``extra`` sits at the right of the title bar (small controls, counts); ``level`` 1 makes
    the title the page's heading."""
    heading = html.H1 if level == 1 else html.H3
    header = html.Div([heading(title, className="card-title"), html.Div(extra, className="card-extra")],
                      className="card-header")
    kwargs = {"id": id} if id else {}
    return html.Div([header, html.Div(list(children), className="card-body")], className=f"card {className}",
                    **kwargs)


def media_url(subject: Subject) -> str:
    """Where the browser loads a sample's image: the UI server proxies it from the backend."""
    return f"/media/{subject.kind}/{quote(str(subject.id), safe='')}/image.png"


def proxied_png(fetch: Callable[[], bytes]) -> Response:
    """A backend PNG as this server's answer (the ``/media/...`` routes): the backend's 404/422 passed on,
    any other failure a 502; the browser may cache it for an hour."""
    try:
        png = fetch()
    except BackendError as exc:
        abort(exc.status if exc.status in (404, 422) else 502)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


def sample_href(subject: Subject) -> str:
    return f"/sample/{subject.id}" if subject.kind == "samples" else f"/upload/{subject.id}"


def verdict_class(label, pred) -> str:
    return "correct" if label is not None and int(label) == int(pred) else "wrong"


def thumbnail(subject: Subject, names: Sequence[str], label, pred, caption: str = "", badge: str = "",
              extra_class: str = "", id_prefix: str = "thumb") -> dcc.Link:
    """A clickable image tile: true -> predicted class, an optional caption (confidence, score) and badge."""
    true_name = class_name(names, label) if label is not None else "unlabelled"
    pred_name = class_name(names, pred)
    return dcc.Link(
        [
            html.Img(src=media_url(subject), className="thumb-img",
                     alt=f"{'sample' if subject.kind == 'samples' else 'upload'} {subject.id}: true {true_name}, "
                         f"predicted {pred_name}"),
            html.Div(
                [
                    html.Div(f"#{subject.id}", className="thumb-id"),
                    html.Div([html.Span("true ", className="thumb-key"), html.Span(true_name)], className="thumb-line"),
                    html.Div([html.Span("pred ", className="thumb-key"), html.Span(pred_name,
                              className=f"pred-{verdict_class(label, pred)}")], className="thumb-line"),
                    html.Div([html.Span(caption), html.Span(badge, className="thumb-badge") if badge else None],
                             className="thumb-caption"),
                ],
                className="thumb-meta",
            ),
        ],
        href=sample_href(subject),
        className=f"thumb {extra_class}".strip(),
        id=f"{id_prefix}-{subject.kind}-{subject.id}",
        title=f"#{subject.id}: true {true_name}, predicted {pred_name}",
    )
