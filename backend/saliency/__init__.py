"""The parameter-space saliency engine: a pure library (torch + numpy only).

Levin et al., "Where do Models go Wrong? Parameter-Space Saliency Maps for Explainability".
"""

from .batch import BatchOutputs, UnsupportedModel, profile_batch
from .export import pruned_state_dict
from .hooks import HookSet
from .input_space import input_saliency
from .layout import FilterLayout, LayerSpan
from .profile import filter_saliency
from .pruning import prune_filters
from .reference import reference_filter_saliency
from .stats import SaliencyStats
from .weight_deltas import row_weight_deltas

__all__ = [
    "BatchOutputs",
    "FilterLayout",
    "HookSet",
    "LayerSpan",
    "SaliencyStats",
    "UnsupportedModel",
    "filter_saliency",
    "input_saliency",
    "profile_batch",
    "prune_filters",
    "pruned_state_dict",
    "reference_filter_saliency",
    "row_weight_deltas",
]
