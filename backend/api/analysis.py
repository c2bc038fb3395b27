"""What the filter, confusion, map, failure-mode and export routes answer, without HTTP (issue 12).

Everything is read from the analysis artifacts (``backend.store.analysis``), opened once on first use (the
large arrays memory-mapped); an artifacts dir written before them answers 422 with the command that adds them.
"""

from __future__ import annotations

import io
import json
import threading

import numpy as np

from backend.store import Artifacts
from backend.store.analysis import Analysis, load_analysis, require
from precompute.analysis.export import artifacts_table

from .service import Invalid, NotFound

SPACES = ("saliency", "feature")
MAX_BINS = 200  # histogram bins of a filter's distribution
MAP_FORMATS = ("points", "columns")
MAX_SELECTION = 5000  # sample ids per selection request: 5,000 rows of ImageNet profiles are ~0.5 GB to read


class AnalysisService:
    def __init__(self, artifacts: Artifacts):
        self.artifacts = artifacts
        self.layout = artifacts.layout
        self.num_filters = int(self.layout.num_filters)
        self.num_classes = int(artifacts.num_classes)
        self._lock = threading.Lock()
        self._loaded = False
        self._analysis: Analysis | None = None
        self._maps: dict[tuple[str, str], bytes] = {}
        self._export_lock = threading.Lock()  # not ``_lock``: a build holds it for as long as it reads
        self._export_csv: bytes | None = None

    @property
    def analysis(self) -> Analysis:
        with self._lock:
            if not self._loaded:
                self._analysis = load_analysis(self.artifacts)
                self._loaded = True
        return require(self._analysis, self.artifacts.directory)

    # ------------------------------------------------------------------------------------ answers
    def filter_page(self, index: int) -> dict:
        if not 0 <= index < self.num_filters:
            raise NotFound(f"no filter {index}: filters are 0..{self.num_filters - 1}")
        a = self.analysis
        stats = self.artifacts.stats
        class_z = a.class_means[:, index].astype(np.float64)
        pair_z = a.pair_means[:, index].astype(np.float64)
        by_class = np.lexsort((a.class_ids, -class_z))
        by_pair = np.lexsort((a.pair_ids[:, 1], a.pair_ids[:, 0], -pair_z))
        return {
            **self._describe(index),
            "raw_mean": float(stats.mean[index]),
            "raw_std": float(stats.std[index]),
            "top_samples": [{"id": int(i), "z": float(z)} for i, z in zip(a.reference_ids[index], a.reference_z[index])],
            "top_activating": [{"id": int(i), "activation": float(v) if np.isfinite(v) else None}
                               for i, v in zip(a.activating_ids[index], a.activating_values[index])],
            "classes": [{"class": int(a.class_ids[g]), "mean_z": float(class_z[g])} for g in by_class],
            "confusions": [{"true": int(a.pair_ids[p, 0]), "pred": int(a.pair_ids[p, 1]),
                            "count": int(a.pair_counts[p]), "mean_z": float(pair_z[p])} for p in by_pair],
        }

    def filter_distribution(self, index: int, bins: int) -> dict:
        """Histogram of one filter's standardized saliency over the correct and the misclassified samples, on
        shared edges (min to max of the column). Reads only profiles_std, so older dirs answer it too."""
        if not 0 <= index < self.num_filters:
            raise NotFound(f"no filter {index}: filters are 0..{self.num_filters - 1}")
        if not 1 <= bins <= MAX_BINS:
            raise Invalid(f"bins must be in [1, {MAX_BINS}], got {bins}")
        z = np.asarray(self.artifacts.profiles_std[:, index], dtype=np.float64)
        correct = np.asarray(self.artifacts.correct, dtype=bool)
        edges = np.histogram_bin_edges(z, bins=bins)
        groups = {"correct": z[correct], "misclassified": z[~correct]}
        return {
            **self._describe(index),
            "edges": edges.tolist(),
            **{name: np.histogram(values, edges)[0].tolist() for name, values in groups.items()},
            **{f"{name}_mean": float(values.mean()) if values.size else None for name, values in groups.items()},
        }

    def confusion(self, true_class: int, pred_class: int, top: int, profile: bool = False) -> dict:
        """The pair's mistakes and top filters; ``profile``: also its whole fingerprint, and the true class's
        correct samples' mean profile beside it (None when the class has no correct sample)."""
        for name, value in (("true_class", true_class), ("pred_class", pred_class)):
            if not 0 <= value < self.num_classes:
                raise NotFound(f"no class {value} ({name}): classes are 0..{self.num_classes - 1}")
        if true_class == pred_class:
            raise Invalid(f"true_class and pred_class are both {true_class}: a confusion needs two different classes")
        if not 1 <= top <= self.num_filters:
            raise Invalid(f"top must be in [1, {self.num_filters}], got {top}")
        a = self.analysis
        match = np.flatnonzero((a.pair_ids[:, 0] == true_class) & (a.pair_ids[:, 1] == pred_class))
        if match.size == 0:
            raise NotFound(f"no sample of class {true_class} is predicted as {pred_class}")
        mean_z = a.pair_means[match[0]].astype(np.float64)
        members = (self.artifacts.labels == true_class) & (self.artifacts.preds == pred_class)
        answer = {
            "count": int(a.pair_counts[match[0]]),
            "sample_ids": np.flatnonzero(members).tolist(),
            "top_filters": self._ranked_filters(mean_z, top),
            "profile": None,
            "class_profile": None,
        }
        if profile:
            correct = np.flatnonzero(a.class_ids == true_class)
            answer["profile"] = mean_z.tolist()
            answer["class_profile"] = a.class_means[correct[0]].astype(np.float64).tolist() if correct.size else None
        return answer

    def mistake_map(self, space: str, fmt: str = "points") -> bytes:
        """The map's JSON body, encoded once per (space, format): it never changes while the dir is served, and
        at 50,000 mistakes building it is most of the answer's time. ``columns`` is the compact form (one array
        per field) for clients that draw the points as arrays."""
        if space not in SPACES:
            raise Invalid(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        if fmt not in MAP_FORMATS:
            raise Invalid(f"format must be one of {', '.join(MAP_FORMATS)}, got {fmt!r}")
        with self._lock:
            cached = self._maps.get((space, fmt))
        if cached is not None:
            return cached
        a = self.analysis
        xy = a.saliency_xy if space == "saliency" else a.feature_xy
        params = dict(self.artifacts.manifest.analysis.maps[space])
        head = {"method": params.get("method"), "params": params}
        if fmt == "columns":
            # float32 coordinates in their shortest exact text: half the bytes of float64 text
            columns = {"ids": json.dumps(a.mistake_ids.tolist()), "x": _float32_json(xy[:, 0]),
                       "y": _float32_json(xy[:, 1]), "cluster": json.dumps(a.failure_mode.tolist()),
                       "label": json.dumps(self.artifacts.labels[a.mistake_ids].tolist()),
                       "pred": json.dumps(self.artifacts.preds[a.mistake_ids].tolist())}
            encoded = (json.dumps(head)[:-1] + "".join(f',"{k}":{v}' for k, v in columns.items()) + "}").encode()
        else:
            ids, x, y, cluster = (a.mistake_ids.tolist(), xy[:, 0].tolist(), xy[:, 1].tolist(), a.failure_mode.tolist())
            points = [{"id": i, "x": u, "y": v, "cluster": c} for i, u, v, c in zip(ids, x, y, cluster)]
            encoded = json.dumps({**head, "points": points}, separators=(",", ":"), allow_nan=False).encode()
        with self._lock:
            self._maps[(space, fmt)] = encoded
        return encoded

    def selection_filters(self, sample_ids: list[int], top: int) -> dict:
        """The filters a set of samples shares: mean standardized saliency over the set, best first."""
        if not sample_ids:
            raise Invalid("sample_ids is empty: select at least one sample")
        if len(sample_ids) > MAX_SELECTION:
            raise Invalid(f"at most {MAX_SELECTION} sample_ids per request, got {len(sample_ids)}; send a subset")
        if not 1 <= top <= self.num_filters:
            raise Invalid(f"top must be in [1, {self.num_filters}], got {top}")
        n = self.artifacts.num_samples
        bad = next((i for i in sample_ids if not 0 <= i < n), None)
        if bad is not None:
            raise NotFound(f"no sample {bad}: samples are 0..{n - 1}")
        ids = np.unique(np.asarray(sample_ids, dtype=np.int64))
        return {"count": int(ids.size), "top_filters": self._ranked_filters(self.artifacts.mean_profile(ids), top)}

    def failure_modes(self) -> list[dict]:
        return [{**mode, "top_filters": [{**self._describe(f["filter"]), "mean_z": f["mean_z"]} for f in mode["top_filters"]]}
                for mode in self.analysis.failure_modes]

    def failure_mode_members(self, cluster: int) -> np.ndarray:
        """The sample ids of failure mode ``cluster``, as ``/api/failure-modes`` lists them (group what-ifs; an
        unknown mode is a bad body field, 422, like an unknown confusion)."""
        modes = self.analysis.failure_modes
        for mode in modes:
            if mode["cluster"] == cluster:
                return np.asarray(mode["sample_ids"], dtype=np.int64)
        known = f"failure modes are 0..{len(modes) - 1}" if modes else "this dir has no mistakes, so no failure modes"
        raise Invalid(f"no failure mode {cluster}: {known}")

    def export_csv(self) -> bytes:
        """The ``pss export`` table as CSV, built on the first request only: it reads every stored profile
        (minutes at ImageNet size), and the served ``Artifacts`` never changes (its arrays are mapped when it
        is opened, so even a dir rewritten in place keeps serving the view that was opened). A concurrent
        first request waits for that one build. No ``path`` column: ids are the dataset's indices, and the
        server's file layout stays on the server."""
        import pyarrow.csv as pcsv

        with self._export_lock:
            if self._export_csv is None:
                buffer = io.BytesIO()
                pcsv.write_csv(artifacts_table(self.artifacts, analysis=self.analysis), buffer)
                self._export_csv = buffer.getvalue()
        return self._export_csv

    def _ranked_filters(self, mean_z: np.ndarray, top: int) -> list[dict]:
        """The ``top`` filters of largest ``mean_z``, best first (ties: smaller filter)."""
        best = np.lexsort((np.arange(mean_z.size), -mean_z))[:top]
        return [{**self._describe(int(f)), "mean_z": float(mean_z[f])} for f in best]

    def _describe(self, index: int) -> dict:
        layer, channel = self.layout.locate(index)
        return {"filter": int(index), "layer": layer, "channel": int(channel)}


def _float32_json(values: np.ndarray) -> str:
    """A JSON array of float32 values, each written in the fewest digits that read back as the same float32."""
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ValueError("map coordinates must be finite")
    return "[" + ",".join(values.astype(str).tolist()) + "]"
