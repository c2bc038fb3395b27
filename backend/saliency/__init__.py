"""The parameter-space saliency engine: a pure library (torch + numpy only).

Levin et al., "Where do Models go Wrong? Parameter-Space Saliency Maps for Explainability".
"""

from .input_space import input_saliency
from .layout import FilterLayout, LayerSpan
from .profile import filter_saliency
from .pruning import prune_filters
from .reference import reference_filter_saliency
from .stats import SaliencyStats

__all__ = [
    "FilterLayout",
    "LayerSpan",
    "SaliencyStats",
    "filter_saliency",
    "input_saliency",
    "prune_filters",
    "reference_filter_saliency",
]
