"""The analysis artifacts of an artifacts dir: per-filter reference samples, class and confusion fingerprints,
the two maps of the mistakes and the failure modes (issue 12).

The arrays with a row or column per filter (``MAPPED``: up to pairs x filters floats, 1.3 GB at ImageNet size)
are one ``.npy`` each, memory-mapped when read, so a server holds only the pages its answers touch (shared,
reclaimable page cache) instead of a private copy; the small per-mistake arrays are ``analysis.npz``, and
``failure_modes.json`` the described clusters. All are written before the manifest, which records them
(``Manifest.analysis``, ``files``). Dirs written before the split keep every array in ``analysis.npz`` and
still open (those arrays are then loaded whole); dirs written before the analysis existed give None, and
consumers answer that the dir needs a rerun of ``pss precompute``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import PSSError

from .atomic import atomic_writer, save_npz_atomic

ANALYSIS = "analysis.npz"
FAILURE_MODES = "failure_modes.json"
MAPPED = ("reference_ids", "reference_z", "activating_ids", "activating_values", "class_means", "pair_means")


def mapped_file(name: str) -> str:
    """The ``.npy`` file of one of the ``MAPPED`` arrays."""
    return f"analysis_{name}.npy"


ANALYSIS_FILES = (ANALYSIS, *(mapped_file(name) for name in MAPPED), FAILURE_MODES)
RERUN = "rerun `pss precompute --force` on this dir to add them"
# the arrays: name -> what each holds (F filters, K reference samples, G classes, P pairs, M mistakes)
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


def write_arrays(out: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes the ``ARRAYS`` atomically: the ``MAPPED`` ones as ``.npy`` files, the rest as ``analysis.npz``."""
    for name in MAPPED:
        with atomic_writer(out / mapped_file(name)) as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    save_npz_atomic(out / ANALYSIS, {name: arrays[name] for name in ARRAYS if name not in MAPPED})


def load_analysis(artifacts) -> Analysis | None:
    """The analysis of an opened ``Artifacts`` (validated against its manifest), or None for an older dir."""
    if artifacts.manifest.analysis is None:
        return None
    listed = artifacts.manifest.files
    split = [name for name in MAPPED if mapped_file(name) in listed]  # all of them, or none in a pre-split dir
    for name in (ANALYSIS, FAILURE_MODES, *(mapped_file(name) for name in split)):
        artifacts._check_file(name, listed.get(name))
    arrays = {**artifacts._npz(ANALYSIS), **{name: artifacts._npy(mapped_file(name)) for name in split}}
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
