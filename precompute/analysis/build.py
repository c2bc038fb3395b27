"""The precompute job's analysis steps (issue 12), so ``precompute/job.py`` only calls them.

In the shard loop: the activation top-K of the shard's channel maxima (taken in ``profile_batch``'s own
pass) goes into the shard file. At assembly, shard by shard and in shard order: the saliency top-K and
the fingerprints on the standardized float32 rows exactly as ``profiles_std.npy`` stores them, and the
shards' activation top-K merged. Then the maps and failure modes of the mistakes, and the files, written
atomically before the manifest. Every step is seeded and order-fixed, so a resumed run writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.store.analysis import FAILURE_MODES, write_arrays
from backend.store.atomic import write_json_atomic
from backend.store.manifest import AnalysisRecord

from .failure_modes import TOP_FILTERS, cluster_points, describe_modes
from .fingerprints import Fingerprints
from .maps import embed, mistake_map, reduce_rows
from .reference import DEFAULT_K, TopK

SHARD_KEYS = ("activating_keys", "activating_seen")
SEED = 0


def shard_activations(maxima: np.ndarray, start: int, k: int = DEFAULT_K) -> dict[str, np.ndarray]:
    """The shard file's entries: the per-filter top K of ``maxima[B, F]`` for samples ``start..start+B-1``."""
    state = TopK(maxima.shape[1], k).update(maxima, np.arange(start, start + maxima.shape[0])).state_dict()
    return {"activating_keys": state["keys"], "activating_seen": state["seen"]}


def shard_has_activations(names) -> bool:
    """Shards written before the analysis existed lack the entries; the job recomputes them."""
    return all(key in names for key in SHARD_KEYS)


class AnalysisAssembly:
    """Rank 0's accumulators while the final arrays are assembled from the shards."""

    def __init__(self, num_filters: int, num_classes: int, k: int = DEFAULT_K):
        self.k = k
        self.salient = TopK(num_filters, k)
        self.activating = TopK(num_filters, k)
        self.fingerprints = Fingerprints(num_classes, num_filters)

    def add_shard(self, archive, start: int, standardized: np.ndarray, labels, preds) -> None:
        """``standardized``: the float32 rows as stored in ``profiles_std.npy``."""
        ids = np.arange(start, start + standardized.shape[0])
        self.salient.update(standardized, ids)
        self.fingerprints.update(standardized, labels, preds)
        self.activating.merge(TopK.from_state_dict({"keys": archive["activating_keys"],
                                                   "seen": archive["activating_seen"]}))

    def write(self, out: Path, profiles_std, features, labels, preds) -> AnalysisRecord:
        """Maps and failure modes of the mistakes, then the analysis arrays and ``failure_modes.json``."""
        mistakes = np.flatnonzero(labels != preds)
        z_rows = np.asarray(profiles_std[mistakes], dtype=np.float32)
        points, reduced = reduce_rows(z_rows, seed=SEED)
        saliency_xy, embedded = embed(points, seed=SEED)
        cluster_of, cluster_params = cluster_points(points, seed=SEED)
        feature_xy, feature_params = mistake_map(np.asarray(features[mistakes], dtype=np.float32), seed=SEED)
        modes = describe_modes(cluster_of, z_rows, labels[mistakes], preds[mistakes], mistakes, top_filters=TOP_FILTERS)

        reference_ids, reference_z = self.salient.result()
        activating_ids, activating_values = self.activating.result()
        class_ids, class_means, class_counts = self.fingerprints.class_means()
        pair_ids, pair_means, pair_counts = self.fingerprints.confusion_means()
        write_arrays(out, {
            "reference_ids": reference_ids, "reference_z": reference_z,
            "activating_ids": activating_ids, "activating_values": activating_values,
            "class_ids": class_ids, "class_means": class_means.astype(np.float32), "class_counts": class_counts,
            "pair_ids": pair_ids.reshape(-1, 2), "pair_means": pair_means.astype(np.float32), "pair_counts": pair_counts,
            "mistake_ids": mistakes.astype(np.int64), "saliency_xy": saliency_xy, "feature_xy": feature_xy,
            "failure_mode": cluster_of,
        })
        write_json_atomic(out / FAILURE_MODES, modes)
        return AnalysisRecord(
            reference_k=self.k,
            maps={"saliency": {**embedded, **reduced}, "feature": feature_params},
            failure_modes={**cluster_params, **reduced},
            top_filters=TOP_FILTERS,
        )
