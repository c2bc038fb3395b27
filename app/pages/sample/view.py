"""What every card of the sample view shares: its component ids, its URL state and the data loaded once
per page (``View``)."""

from __future__ import annotations

from dataclasses import dataclass

from app import figures
from app.client import Subject
from app.url_state import Field, QueryState, choice, flag, integer, nearest, span, write_span

PREFIX = "sample"
MAX_TOP_K = 50
MAX_PRUNE = 20
BOOSTS = [1, 3, 10, 30, 100, 300, 1000]
SPACES = ("saliency", "feature")
PRUNE_MODES = ("salient", "random", "least")
TOP_FILTERS = 20  # salient filters shown, and offered for pruning
MASK_PERCENTS = (1, 2, 5, 10, 20, 30, 50)  # the Masks card's stops
MASK_MODES = ("salient", "random")
FIX_TOP_KS = (1, 5, 10, 25, 50, 100)  # the One-step fix card's stops
FIX_STEPS = (0.0001, 0.001, 0.01, 0.1)


def sid(name: str) -> str:
    """A component id of this page (page-prefixed, so no other page's ids can clash)."""
    return f"{PREFIX}-{name}"


def id_list(text: str) -> tuple[int, ...]:
    """``3,17,5`` -> the filter ids, in that order, without repeats (negative ids refused)."""
    ids = tuple(dict.fromkeys(int(v) for v in text.split(",") if v.strip()))
    if not ids or min(ids) < 0:
        raise ValueError(text)
    return ids


# ?top_k=10&boost=100&layers=2:5&space=feature&mistakes=1&prune=3&mode=salient&off=3,9,17&seed=2&filter=9
#  &mask=10&mask_by=random&fix=5&fix_by=least&fix_step=0.01
STATE = QueryState(
    Field("top_k", 10, integer(1, MAX_TOP_K), always=True),
    Field("boost", 100, nearest(BOOSTS)),
    Field("layers", None, span, write_span),
    Field("space", "saliency", choice(SPACES)),
    Field("misclassified_only", False, flag, write=lambda _: 1, key="mistakes"),
    Field("prune_top_k", 0, integer(0, MAX_PRUNE), key="prune"),
    Field("prune_mode", "salient", choice(PRUNE_MODES), key="mode"),
    Field("target", None, integer(0)),  # explain against this class instead of the true label
    # the exact filters switched off when they are not the top ``prune`` (ticked by hand)
    Field("off", None, id_list, write=lambda ids: ",".join(str(i) for i in ids)),
    Field("seed", 0, integer(0, 2**32 - 1)),  # which random draw ("draw again" counts it up)
    Field("filter", None, integer(0)),  # the filter whose other mistakes are shown
    Field("mask_percent", 5, nearest(MASK_PERCENTS), key="mask"),
    Field("mask_mode", "salient", choice(MASK_MODES), key="mask_by"),
    Field("fix_top_k", 25, nearest(FIX_TOP_KS), key="fix"),
    Field("fix_mode", "salient", choice(PRUNE_MODES), key="fix_by"),
    Field("fix_step", 0.001, nearest(FIX_STEPS), key="fix_step"),
)


def slider_layers(layers: tuple[int, int] | None, num_layers: int) -> list[int]:
    """A link's layer range as the range slider shows it: all layers when it has none or one past the model."""
    return list(layers) if layers is not None and layers[1] <= num_layers else [0, num_layers]


def layer_span(value, num_layers: int) -> tuple[int, int] | None:
    """The range slider's value as the backend's ``layers`` (None: all layers)."""
    if not value or len(value) != 2:
        return None
    start, stop = int(value[0]), int(value[1])
    return None if (start, stop) == (0, num_layers) else (start, stop)


@dataclass(frozen=True)
class View:
    """One sample page as its cards draw it: loaded once, when the page opens."""

    subject: Subject
    info: dict
    detail: dict
    state: dict  # STATE.parse of the page's URL
    filters: list[dict] | None  # the TOP_FILTERS most salient filters; None: they could not be loaded
    profile: dict | None
    load_error: str | None = None
    filter_answer: object = None  # a link's ?filter=: the samples where that filter is most salient

    @property
    def layers(self) -> list[tuple[str, int, int]]:
        return figures.parse_layers(self.info.get("layers"))

    @property
    def z(self) -> list[float] | None:
        """The full standardized profile (None: it could not be loaded)."""
        return None if self.profile is None else self.profile["z"]

    @property
    def class_names(self) -> list[str]:
        return self.detail.get("class_names") or self.info.get("classes", [])


def subject_of(data: dict) -> Subject:
    """The page's subject from its store (``sid("subject")``), for callbacks."""
    return Subject(data["kind"], str(data["id"]), data.get("target"))
