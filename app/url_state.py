"""A page's state in its URL query, declared once per page as fields, so every page parses and writes its
links the same way.

Parsing is forgiving on purpose: a hand-edited link gives each bad value its default instead of an error
page. It checks form only (an int is an int, a choice is one of the choices); limits that depend on the
model (how many layers) are the page's display concern, and the backend validates what it is asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode


@dataclass(frozen=True)
class Field:
    """One state entry: ``name`` in the page's state, ``key`` in the URL (kept short and stable for links)."""

    name: str
    default: Any
    read: Callable[[str], Any]  # URL text -> value; raises ValueError for a value that does not fit
    write: Callable[[Any], Any] = str
    key: str | None = None
    always: bool = False  # written even when it has its default value

    @property
    def url_key(self) -> str:
        return self.key or self.name


class QueryState:
    """Parses and writes the URL query of one page."""

    def __init__(self, *fields: Field):
        self.fields = fields

    def parse(self, query: str | Mapping[str, Any] | None) -> dict:
        """``?a=1&b=2``, or Dash's already split query (a value per key, a list for a repeated key)."""
        if query is None or isinstance(query, str):
            query = {k: v for k, v in parse_qs((query or "").lstrip("?")).items()}
        state = {}
        for field in self.fields:
            value = query.get(field.url_key)
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            try:
                state[field.name] = field.default if value is None else field.read(str(value))
            except ValueError:
                state[field.name] = field.default
        return state

    def build(self, state: Mapping[str, Any]) -> str:
        """State -> ``?...`` (fields at their default left out, so plain links stay short); "" if empty."""
        query = {f.url_key: f.write(state[f.name]) for f in self.fields
                 if f.name in state and state[f.name] is not None and (f.always or state[f.name] != f.default)}
        return f"?{urlencode(query, safe=':,')}" if query else ""


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int, clamped into [low, high] (either end open when None)."""
    def read(text: str) -> int:
        value = int(text)
        value = value if low is None else max(value, low)
        return value if high is None else min(value, high)
    return read


def number(low: float, high: float) -> Callable[[str], float]:
    """A float clamped into [low, high]."""
    return lambda text: min(max(float(text), low), high)


def nearest(options: Sequence[float]) -> Callable[[str], float]:
    """The option nearest to a link's positive number on a log scale (a control with fixed stops)."""
    def read(text: str) -> float:
        value = float(text)
        if not value > 0:
            raise ValueError(text)
        return min(options, key=lambda option: abs(math.log(option) - math.log(value)))
    return read


def choice(options: Sequence[str]) -> Callable[[str], str]:
    """One of ``options`` exactly."""
    def read(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text
    return read


def flag(text: str) -> bool:
    """``1`` is on; anything else off (links write ``1``)."""
    return text == "1"


def span(text: str) -> tuple[int, int]:
    """``START:STOP`` with 0 <= START < STOP (the upper bound is the model's, checked where it is known)."""
    start, stop = (int(v) for v in text.split(":", 1))
    if not 0 <= start < stop:
        raise ValueError(text)
    return start, stop


def write_span(value: Sequence[int]) -> str:
    return f"{value[0]}:{value[1]}"
