"""Card (toy, to show what a new card takes): the sample's three likeliest classes."""

from __future__ import annotations

from dash import html

from app.components import card, class_name
from app.pages.sample.view import View, sid


def layout(view: View):
    probs = view.detail["probs"]
    top = sorted(range(len(probs)), key=lambda c: -probs[c])[:3]
    return card("Likeliest classes", html.Ol([html.Li(f"{class_name(view.class_names, c)}: {probs[c]:.0%}")
                                              for c in top], id=sid("top-classes")))


def register(app, client) -> None:
    """No callbacks: the card is drawn once with the page."""
