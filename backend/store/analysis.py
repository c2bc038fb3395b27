"""The analysis artifacts of an artifacts dir: per-filter reference samples, class and confusion fingerprints,
the two maps of the mistakes and the failure modes (issue 12).

``analysis.npz`` holds the arrays, ``failure_modes.json`` the described clusters; both are written before the
manifest, which records them (``Manifest.analysis``, ``files``). Dirs written before they existed still open:
``load_analysis`` then gives None, and consumers answer that the dir needs a rerun of ``pss precompute``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import PSSError

ANALYSIS = "analysis.npz"
FAILURE_MODES = "failure_modes.json"
ANALYSIS_FILES = (ANALYSIS, FAILURE_MODES)
RERUN = "rerun `pss precompute --force` on this dir to add them"
# analysis.npz: name -> what it holds (F filters, K reference samples, G classes, P pairs, M mistakes)
ARRAYS = {
    "reference_ids": "int64 [F, K] samples of largest standardized saliency per filter, best first (ties: smaller id)",
    "reference_z": "float32 [F, K] their standardized saliency",
    "activating_ids": "int64 [F, K] samples of largest channel maximum per filter, best first (ties: smaller id)",
    "activating_values": "float32 [F, K] their channel maximum (max over positions of the filter's output)",
    "class_ids": "int64 [G] classes with at least one correct sample, ascending",
    "class_means": "float32 [G, F] mean standardized profile of each class's correct samples",
    "class_counts": "int64 [G]",
    "pair_ids": "int64 [P, 2] (true, pred) pairs with at least one mistake, ascending",
    "pair_means": "float32 [P, F] mean standardized profile of each pair's mistakes",
    "pair_counts": "int64 [P]",
    "mistake_ids": "int64 [M] the misclassified samples, ascending",
    "saliency_xy": "float32 [M, 2] map of the mistakes in saliency space",
    "feature_xy": "float32 [M, 2] map of the mistakes in feature space",
    "failure_mode": "int64 [M] failure mode (cluster) of each mistake",
}


class AnalysisMissing(PSSError):
    """The dir was written before the analysis artifacts existed."""


@dataclass(frozen=True)
class Analysis:
    directory: Path
    arrays: dict[str, np.ndarray]
    failure_modes: list[dict]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None


def load_analysis(artifacts) -> Analysis | None:
    """The analysis of an opened ``Artifacts`` (validated against its manifest), or None for an older dir."""
    if artifacts.manifest.analysis is None:
        return None
    for name in ANALYSIS_FILES:
        artifacts._check_file(name, artifacts.manifest.files.get(name))
    arrays = artifacts._npz(ANALYSIS)
    missing = sorted(set(ARRAYS) - set(arrays))
    if missing:
        raise PSSError(f"{artifacts.directory / ANALYSIS} lacks {', '.join(missing)}; {RERUN}")
    path = artifacts.directory / FAILURE_MODES
    try:
        modes = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PSSError(f"{path} is unreadable: {exc}; {RERUN}") from exc
    return Analysis(artifacts.directory, arrays, modes)


def require(analysis: Analysis | None, directory) -> Analysis:
    """``analysis``, or ``AnalysisMissing`` naming the fix."""
    if analysis is None:
        raise AnalysisMissing(f"{directory} has no filter reference samples, fingerprints, maps or failure modes "
                              f"(written by an older pss); {RERUN}")
    return analysis
