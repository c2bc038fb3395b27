"""Class and confusion fingerprints: the mean profile of each class's correct samples and of each
(true, predicted) pair's mistakes, with counts.

Sums are kept in float64 per group and merge by addition, so shards and ranks combine in any order. The
mean of standardized profiles is the standardized mean of raw ones (standardizing is affine per filter), so
the job can feed raw profiles in its shard loop, before the dataset's statistics exist, and finish with
``stats.standardize(means)``; fed standardized rows, the means are those of the rows given.
"""

from __future__ import annotations

import numpy as np


class GroupSums:
    """Per integer group: the float64 sum of its rows and their count."""

    def __init__(self, num_filters: int):
        self.num_filters = num_filters
        self.sums: dict[int, np.ndarray] = {}
        self.counts: dict[int, int] = {}

    def add(self, rows: np.ndarray, groups: np.ndarray) -> None:
        if rows.shape[0] == 0:
            return
        order = np.argsort(groups, kind="stable")
        codes, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(np.asarray(rows[order], dtype=np.float64), starts, axis=0)
        for code, total, count in zip(codes.tolist(), sums, counts.tolist()):
            self._accumulate(code, total, count)

    def merge(self, other: "GroupSums") -> None:
        if other.num_filters != self.num_filters:
            raise ValueError(f"cannot merge sums over {other.num_filters} and {self.num_filters} filters")
        for code, total in other.sums.items():
            self._accumulate(code, total, other.counts[code])

    def means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(codes int64 [G] ascending, means float64 [G, F], counts int64 [G])``."""
        codes = np.array(sorted(self.sums), dtype=np.int64)
        counts = np.array([self.counts[c] for c in codes.tolist()], dtype=np.int64)
        sums = np.stack([self.sums[c] for c in codes.tolist()]) if codes.size else np.zeros((0, self.num_filters))
        return codes, sums / np.maximum(counts, 1)[:, None], counts

    def state_dict(self, prefix: str) -> dict[str, np.ndarray]:
        codes = np.array(sorted(self.sums), dtype=np.int64)
        return {
            f"{prefix}_codes": codes,
            f"{prefix}_sums": np.stack([self.sums[c] for c in codes.tolist()]) if codes.size
            else np.zeros((0, self.num_filters)),
            f"{prefix}_counts": np.array([self.counts[c] for c in codes.tolist()], dtype=np.int64),
        }

    def load(self, state, prefix: str) -> None:
        for code, total, count in zip(
            np.asarray(state[f"{prefix}_codes"]).tolist(), state[f"{prefix}_sums"], np.asarray(state[f"{prefix}_counts"]).tolist()
        ):
            self._accumulate(code, np.asarray(total, dtype=np.float64), count)

    def _accumulate(self, code: int, total: np.ndarray, count: int) -> None:
        if code in self.sums:
            self.sums[code] += total
            self.counts[code] += count
        else:
            self.sums[code] = np.array(total, dtype=np.float64)
            self.counts[code] = count


class Fingerprints:
    """Streaming, mergeable class fingerprints (correct samples) and confusion fingerprints (mistakes)."""

    def __init__(self, num_classes: int, num_filters: int):
        if num_classes < 1 or num_filters < 0:
            raise ValueError(f"need num_classes >= 1 and num_filters >= 0, got {num_classes} and {num_filters}")
        self.num_classes = num_classes
        self.classes = GroupSums(num_filters)
        self.pairs = GroupSums(num_filters)  # group code = true * num_classes + pred

    def update(self, profiles, labels, preds) -> "Fingerprints":
        """Adds rows ``profiles[B, F]`` of samples with true ``labels[B]`` and predicted ``preds[B]``."""
        profiles = np.asarray(profiles)
        labels, preds = np.asarray(labels), np.asarray(preds)
        if profiles.ndim != 2 or profiles.shape[1] != self.classes.num_filters:
            raise ValueError(f"expected profiles of shape [rows, {self.classes.num_filters}], got {profiles.shape}")
        if labels.shape != (profiles.shape[0],) or preds.shape != labels.shape:
            raise ValueError(f"expected {profiles.shape[0]} labels and predictions, got {labels.shape} and {preds.shape}")
        for name, values in (("labels", labels), ("predictions", preds)):
            if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"{name} must be integers in [0, {self.num_classes})")
        correct = labels == preds
        self.classes.add(profiles[correct], labels[correct].astype(np.int64))
        wrong = ~correct
        self.pairs.add(profiles[wrong], labels[wrong].astype(np.int64) * self.num_classes + preds[wrong])
        return self

    def merge(self, other: "Fingerprints") -> "Fingerprints":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge fingerprints over {other.num_classes} and {self.num_classes} classes")
        self.classes.merge(other.classes)
        self.pairs.merge(other.pairs)
        return self

    def class_means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(classes [G], means float64 [G, F], counts [G])`` for every class with >= 1 correct sample."""
        return self.classes.means()

    def confusion_means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pairs int64 [P, 2] of (true, pred) ascending, means float64 [P, F], counts [P])``, mistakes only."""
        codes, means, counts = self.pairs.means()
        return np.stack([codes // self.num_classes, codes % self.num_classes], axis=1), means, counts

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"num_classes": np.asarray(self.num_classes), **self.classes.state_dict("class"), **self.pairs.state_dict("pair")}

    @classmethod
    def from_state_dict(cls, state) -> "Fingerprints":
        fingerprints = cls(int(state["num_classes"]), np.asarray(state["class_sums"]).shape[1])
        fingerprints.classes.load(state, "class")
        fingerprints.pairs.load(state, "pair")
        return fingerprints
