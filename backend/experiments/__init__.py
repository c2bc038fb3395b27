"""The paper's dataset-level validation experiments, run on an artifacts dir (``pss experiments``).

Each experiment writes ``DIR/experiments/<name>.json``. An experiment is one module that registers itself
(``registry.py``); importing it below is its registration line, and the order is the order they run in.
"""

from . import pruning, neighbors, finetuning, masking, gradcam, sanity  # noqa: F401, I001 -- registration
from .registry import EXPERIMENTS, RESULTS_DIR, Experiment, Flag

NAMES: tuple[str, ...] = tuple(EXPERIMENTS)

__all__ = ["EXPERIMENTS", "NAMES", "RESULTS_DIR", "Experiment", "Flag"]
