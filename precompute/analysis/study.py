"""The measurements behind docs/results.md's failure-mode section, on a finished artifacts dir.

    python -m precompute.analysis.study --artifacts DIR [--seeds 5] [--clusters K ...] [--top-filters 5]

Prints JSON: (1) adjusted mutual information between the k-means failure modes of the mistakes and their
(true, pred) pairs, clustering in saliency space (``profiles_std``) and, identically, in feature space
(``features.npy``), per seed and k, also against the true and the predicted class alone; (2) for every confusion pair with at least ``--min-count`` mistakes,
the share of its top filters' reference samples (top-K by standardized saliency over the whole dataset)
that are that pair's own mistakes, against the pair's share of the dataset and of the mistakes; and the
same with the filters chosen on half of the pair's mistakes and only the other half counted (held out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .evidence import ami, confusion_ami, reference_dominance
from .failure_modes import cluster_points, default_clusters
from .fingerprints import Fingerprints
from .maps import reduce_rows
from .reference import DEFAULT_K, TopK

SHARD_ROWS = 1024


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m precompute.analysis.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", required=True, help="a finished artifacts dir (pss precompute --out)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for PCA and k-means (default 5)")
    parser.add_argument("--clusters", type=int, nargs="*", default=None,
                        help="k values to try (default: the dashboard's default_clusters(mistakes))")
    parser.add_argument("--top-filters", type=int, default=5, help="top filters per confusion pair (default 5)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"reference samples per filter (default {DEFAULT_K})")
    parser.add_argument("--min-count", type=int, default=10, help="pairs with fewer mistakes are skipped (default 10)")
    return parser.parse_args(argv)


def top_filters(mean_z: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` filters of largest mean z, ties by smaller id."""
    return np.lexsort((np.arange(mean_z.size), -mean_z))[:count]


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.artifacts)
    missing = [name for name in ("predictions.npz", "profiles_std.npy", "features.npy") if not (root / name).exists()]
    if missing:
        print(f"error: {root} is not a finished artifacts dir (missing {', '.join(missing)})", file=sys.stderr)
        return 2
    predictions = np.load(root / "predictions.npz")
    labels, preds = predictions["label"].astype(np.int64), predictions["pred"].astype(np.int64)
    z = np.load(root / "profiles_std.npy", mmap_mode="r")
    features = np.load(root / "features.npy", mmap_mode="r")
    wrong = np.flatnonzero(labels != preds)
    report = {"samples": int(labels.size), "mistakes": int(wrong.size), "filters": int(z.shape[1])}

    ks = args.clusters or [default_clusters(wrong.size)]
    spaces = {"saliency": z[wrong], "feature": features[wrong]}
    # Against the pair, and, to see where the information comes from, against its true and predicted class.
    targets = ("pair", "true", "pred")
    scores = {space: {target: {str(k): [] for k in ks} for target in targets} for space in spaces}
    for seed in range(args.seeds):
        for space, rows in spaces.items():
            points, _ = reduce_rows(rows, seed=seed)
            for k in ks:
                cluster_of, _ = cluster_points(points, clusters=k, seed=seed)
                measured = {
                    "pair": confusion_ami(cluster_of, labels[wrong], preds[wrong]),
                    "true": ami(cluster_of, labels[wrong]),
                    "pred": ami(cluster_of, preds[wrong]),
                }
                for target in targets:
                    scores[space][target][str(k)].append(round(measured[target], 4))
    report["ami"] = scores

    started = time.perf_counter()
    top = TopK(z.shape[1], args.k)
    fingerprints = Fingerprints(int(max(labels.max(), preds.max())) + 1, z.shape[1])
    for start in range(0, labels.size, SHARD_ROWS):
        block = np.asarray(z[start : start + SHARD_ROWS])
        top.update(block, np.arange(start, start + block.shape[0]))
        fingerprints.update(block, labels[start : start + SHARD_ROWS], preds[start : start + SHARD_ROWS])
    report["streaming_seconds"] = round(time.perf_counter() - started, 2)
    reference_ids, _ = top.result()
    pairs, means, counts = fingerprints.confusion_means()
    report["dominance"] = []
    for (true, pred), mean_z, count in zip(pairs.tolist(), means, counts.tolist()):
        if count < args.min_count:
            continue
        filters = top_filters(mean_z, args.top_filters)
        own = wrong[(labels[wrong] == true) & (preds[wrong] == pred)]
        measured = reference_dominance(reference_ids, filters, own, labels.size)
        mistakes = float(np.isin(reference_ids[filters].ravel(), wrong).mean())
        # The filters were chosen on these very mistakes; held out: choose them on every other mistake of
        # the pair and count only the remaining ones among the references.
        chosen, held_out = own[::2], own[1::2]
        held_filters = top_filters(np.asarray(z[chosen], dtype=np.float64).mean(axis=0), args.top_filters)
        held = reference_dominance(reference_ids, held_filters, held_out, labels.size)
        report["dominance"].append({
            "true": true, "pred": pred, "count": count, **measured,
            "share_of_mistakes": round(count / wrong.size, 4), "any_mistake": mistakes,
            "held_out_fraction": held["fraction"], "held_out_share_of_mistakes": round(held_out.size / wrong.size, 4),
        })
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
