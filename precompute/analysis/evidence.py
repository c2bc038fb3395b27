"""Measures for docs/results.md: do failure modes separate confusion pairs, and are a confusion's top
filters' reference samples dominated by that confusion?"""

from __future__ import annotations

import numpy as np


def ami(cluster_of, groups) -> float:
    """Adjusted mutual information of two labelings: 0 when unrelated (chance-corrected), 1 when equal."""
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(np.asarray(groups), np.asarray(cluster_of)))


def confusion_ami(cluster_of, labels, preds) -> float:
    """``ami`` of the clusters of the mistakes against their (true, pred) pairs."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    return ami(cluster_of, labels * (max(int(labels.max(initial=0)), int(preds.max(initial=0))) + 1) + preds)


def reference_dominance(reference_ids: np.ndarray, filters, pair_ids, num_samples: int) -> dict:
    """How much of the reference samples (``reference_ids[F, K]`` from ``TopK``) of ``filters`` are the
    pair's own mistakes (``pair_ids``), against the share those mistakes have in the dataset (the rate
    expected by chance)."""
    chosen = np.asarray(reference_ids)[np.asarray(filters, dtype=np.int64)].ravel()
    own = np.isin(chosen, np.asarray(pair_ids)).mean() if chosen.size else 0.0
    return {"fraction": float(own), "base_rate": float(len(pair_ids) / num_samples), "references": int(chosen.size)}
