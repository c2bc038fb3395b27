"""The artifacts dir: what the precompute job writes and the backend reads (see ``docs`` and DESIGN.md).

``manifest.json`` (``manifest.py``) is written last and is the only commit point: without it a directory is
not ready. It records the shape, dtype and byte size of every other file, so a truncated or swapped file is
caught at ``Artifacts.open`` and named, instead of surfacing later as a numpy traceback.

Callers validate their own input (the API's service checks k, layer ranges and spaces against the model);
the store answers.
"""

from __future__ import annotations

import json
import math
import threading
import zipfile
from pathlib import Path

import numpy as np

from backend.errors import PSSError
from backend.saliency import SaliencyStats

from . import exact, search, storage
from .manifest import MANIFEST, Manifest
PREDICTIONS = "predictions.npz"
STATS = "stats.npz"
PROFILES_RAW = "profiles_raw.npy"
PROFILES_STD = "profiles_std.npy"
FEATURES = "features.npy"
PROFILE_NORMS = "profile_norms.npy"  # [N, layers + 1] float64 prefix sums of squares of profiles_std
INDEX = "index.faiss"
DATA_FILES = (PREDICTIONS, STATS, PROFILES_RAW, PROFILES_STD, FEATURES, PROFILE_NORMS, INDEX)
SPACES = ("saliency", "feature")
MEAN_BLOCK_ROWS = 256  # rows of profiles_std summed at a time by mean_profile


def describe_file(path: Path) -> dict:
    """What the manifest records about a written file: byte size, and shapes/dtypes of the arrays in it."""
    path = Path(path)
    entry: dict = {"bytes": path.stat().st_size}
    if path.suffix == ".npy":
        shape, dtype, _ = _npy_header(path)
        entry.update(shape=list(shape), dtype=dtype.str)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            entry["arrays"] = {
                name: {"shape": list(archive[name].shape), "dtype": archive[name].dtype.str} for name in archive.files
            }
    return entry


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` from a ``.npy`` header, without reading the data."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f".npy format version {version} is not written by pss")
        shape, fortran, dtype = readers[version](handle)
        if fortran:
            raise ValueError("Fortran-ordered arrays are not written by pss")
        return tuple(shape), dtype, handle.tell()


def exact_search(directory: Path, manifest: Manifest, profiles_std, profile_norms: np.ndarray) -> exact.ExactSearch:
    """The exact layer-range search over a dir's stored profiles; its search copy is tied to this manifest."""
    boundaries = [span.start for span in manifest.layout.spans] + [manifest.layout.num_filters]
    return exact.ExactSearch(profiles_std, profile_norms, boundaries, directory,
                             json.dumps(manifest.to_json(), sort_keys=True))


def build_search_copy(directory: Path, manifest: Manifest) -> None:
    """Writes the search copy (exact.py) of a dir whose arrays are complete and whose ``manifest`` is not yet
    written (so the copy is part of the finished dir); nothing for profiles below ``exact.MIN_BYTES``."""
    profiles_std = storage.open_rows(np.load(directory / PROFILES_STD, mmap_mode="r", allow_pickle=False),
                                     manifest.storage.profiles_std)
    norms = np.load(directory / PROFILE_NORMS, mmap_mode="r", allow_pickle=False)
    exact_search(directory, manifest, profiles_std, norms).prepare()


class Artifacts:
    """A validated, read-only view of an artifacts dir; safe to share between threads.

    Large arrays are memory-mapped (the OS page cache holds them, shared between processes); predictions
    and statistics are small and loaded.
    """

    def __init__(self, directory: Path, manifest: Manifest):
        self.directory = directory
        self.manifest = manifest
        self._lock = threading.Lock()
        self._feature_norms: np.ndarray | None = None

    # ------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str | Path) -> "Artifacts":
        """Opens and validates ``directory``; raises ``PSSError`` naming the first problem found."""
        directory = Path(directory)
        if not directory.is_dir():
            raise PSSError(f"artifacts dir {directory} does not exist; create it with `pss precompute`")
        artifacts = cls(directory, Manifest.read(directory))
        artifacts._load()
        return artifacts

    def _load(self) -> None:
        for name in DATA_FILES:
            self._check_file(name, self.manifest.files.get(name))
        self.layout = self.manifest.layout
        self.num_samples = self.manifest.num_samples
        self.class_names = list(self.manifest.class_names)

        predictions = self._npz(PREDICTIONS)
        self.labels = predictions["label"]
        self.preds = predictions["pred"]
        self.probs = predictions["probs"]
        self.loss = predictions["loss"]
        self.correct = self.labels == self.preds
        self.stats = SaliencyStats.from_state_dict(self._npz(STATS))

        stored = self.manifest.storage
        self.profiles_raw = storage.open_rows(self._npy(PROFILES_RAW), stored.profiles_raw)
        self.profiles_std = storage.open_rows(self._npy(PROFILES_STD), stored.profiles_std)
        self.features = storage.open_rows(self._npy(FEATURES), stored.features)
        self.profile_norms = self._npy(PROFILE_NORMS)
        self._check_consistency()
        self.exact = exact_search(self.directory, self.manifest, self.profiles_std, self.profile_norms)
        self.index = None
        if self.index_kind != "flat":  # flat queries use the exact path over profiles_std instead (no copy)
            import faiss

            try:
                self.index = faiss.read_index(str(self.directory / INDEX))
            except RuntimeError as exc:
                raise PSSError(f"{self.directory / INDEX} is not a readable FAISS index: {exc}") from exc
            if self.index.ntotal != self.num_samples or self.index.d != self.layout.num_filters:
                raise PSSError(f"{self.directory / INDEX} does not hold this dir's {self.num_samples} profiles")

    def _check_file(self, name: str, entry) -> None:
        path = self.directory / name
        if not isinstance(entry, dict):
            raise PSSError(f"{self.directory / MANIFEST} does not list {name}; rerun `pss precompute --force`")
        if not path.is_file():
            raise PSSError(f"{path} is missing; rerun `pss precompute ... --out {self.directory} --force`")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise PSSError(f"{path} is {size} bytes, the manifest says {entry.get('bytes')}: truncated or replaced")
        if name.endswith(".npy"):
            try:
                shape, dtype, offset = _npy_header(path)
            except (ValueError, OSError, SyntaxError) as exc:
                raise PSSError(f"{path} is not a valid .npy file: {exc}") from exc
            if list(shape) != entry.get("shape") or dtype.str != entry.get("dtype"):
                raise PSSError(
                    f"{path} holds {dtype.str}{list(shape)}, the manifest says {entry.get('dtype')}{entry.get('shape')}"
                )
            if offset + math.prod(shape) * dtype.itemsize != size:
                raise PSSError(f"{path} is truncated: its header promises more data than the file holds")

    def _npz(self, name: str) -> dict[str, np.ndarray]:
        path = self.directory / name
        expected = self.manifest.files[name].get("arrays", {})
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise PSSError(f"{path} is unreadable: {exc}") from exc
        for key, spec in expected.items():
            if key not in arrays:
                raise PSSError(f"{path} lacks the array {key!r}")
            if list(arrays[key].shape) != spec["shape"] or arrays[key].dtype.str != spec["dtype"]:
                raise PSSError(f"{path}: array {key!r} is {arrays[key].dtype.str}{list(arrays[key].shape)}, "
                               f"the manifest says {spec['dtype']}{spec['shape']}")
        return arrays

    def _npy(self, name: str) -> np.ndarray:
        return np.load(self.directory / name, mmap_mode="r", allow_pickle=False)

    def _check_consistency(self) -> None:
        n, f = self.num_samples, self.layout.num_filters
        expectations = {
            PROFILES_RAW: (self.profiles_raw.shape, (n, f)),
            PROFILES_STD: (self.profiles_std.shape, (n, f)),
            FEATURES: (self.features.shape[:1], (n,)),
            PROFILE_NORMS: (self.profile_norms.shape, (n, len(self.layout) + 1)),
            f"{PREDICTIONS}:label": (self.labels.shape, (n,)),
            f"{PREDICTIONS}:probs": (self.probs.shape[:1], (n,)),
            f"{STATS}:mean": (self.stats.mean.shape, (f,)),
        }
        for what, (actual, expected) in expectations.items():
            if tuple(actual) != expected:
                raise PSSError(f"{self.directory}/{what} has shape {tuple(actual)}, expected {expected} "
                               f"for {n} samples and {f} filters")
        stored = self.manifest.storage
        for name, fmt in ((PROFILES_RAW, stored.profiles_raw), (PROFILES_STD, stored.profiles_std),
                          (FEATURES, stored.features)):
            if self.manifest.files[name]["dtype"] != storage.numpy_dtype(fmt).str:
                raise PSSError(f"{self.directory}/{name} holds {self.manifest.files[name]['dtype']}, but the "
                               f"manifest says it is stored as {fmt}; rerun `pss precompute --force`")

    # ----------------------------------------------------------------------------- manifest fields
    @property
    def model_spec(self) -> str:
        return self.manifest.model.spec

    @property
    def weights_sha256(self) -> str:
        return self.manifest.model.weights_sha256

    @property
    def data_spec(self) -> str:
        return self.manifest.data.spec

    @property
    def dataset_fingerprint(self) -> str:
        return self.manifest.data.fingerprint

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def accuracy(self) -> float:
        return self.manifest.accuracy

    @property
    def index_kind(self) -> str:
        return self.manifest.index.kind

    def check_matches(self, model_spec: str, weights_sha256: str, layout, dataset_fingerprint: str) -> None:
        """Raises ``PSSError`` with a one-line reason when these artifacts were made for another model or data."""
        where = f"artifacts in {self.directory}"
        if model_spec != self.model_spec:
            raise PSSError(f"{where} are for model {self.model_spec!r}, not {model_spec!r}")
        if weights_sha256 != self.weights_sha256:
            raise PSSError(
                f"{where} are stale: model {model_spec!r} has weights sha256 {weights_sha256[:12]}..., the "
                f"artifacts were computed with {self.weights_sha256[:12]}...; rerun `pss precompute --force`"
            )
        if layout != self.layout:
            raise PSSError(f"{where} have a different filter layout ({self.layout}) than the model ({layout})")
        if dataset_fingerprint != self.dataset_fingerprint:
            raise PSSError(
                f"{where} are stale: dataset {self.data_spec!r} changed since they were computed "
                "(fingerprint differs); rerun `pss precompute --force`"
            )

    # ---------------------------------------------------------------------------------- searching
    def neighbors(
        self,
        query,
        k: int = 10,
        layers: tuple[int, int] | None = None,
        space: str = "saliency",
        misclassified_only: bool = False,
    ) -> list[dict]:
        """The ``k`` most cosine-similar samples, best first: ``[{"id": int, "score": float}]``.

        ``query`` is a sample id (that sample is excluded) or a vector: a standardized profile
        (``space="saliency"``) or a feature vector (``space="feature"``), e.g. of an upload. ``layers``
        restricts the saliency profile to filters of layers ``start:stop`` (always exact). Without
        ``layers``, saliency search uses the FAISS index (exact for ``flat``; ``sq8``/``ivf`` are approximate,
        see ``manifest.index.recall_at_10``). The caller keeps to ``k >= 1``, ``space`` in ``SPACES``, and
        ``0 <= start < stop <= len(layout)`` for saliency only.
        """
        matrix = self.profiles_std if space == "saliency" else self.features
        query_id, vector = self._query_vector(query, matrix, space)
        allowed = None
        if misclassified_only or query_id is not None:
            allowed = ~self.correct if misclassified_only else np.ones(self.num_samples, dtype=bool)
            if query_id is not None:
                allowed[query_id] = False
        if space == "feature":
            dim = self.features.shape[1]
            scores = search.range_cosine(self.features, self._features_norms(), vector, (0, dim), (0, 1))
            ids, scores = search.top_k(scores, int(k), allowed)
        elif layers is None and self.index is not None:
            ids, scores = search.faiss_search(self.index, vector, int(k), allowed)
        else:
            start, stop = layers if layers is not None else (0, len(self.layout))
            ids, scores, _, _ = self.exact.search(vector, int(k), (start, stop), allowed)
        return [{"id": int(i), "score": float(s)} for i, s in zip(ids, scores)]

    def mean_profile(self, ids: np.ndarray) -> np.ndarray:
        """Float64 mean of the standardized profiles of the samples ``ids`` (the filters a group shares),
        read a block of rows at a time so that a large group never holds all its rows at once."""
        ids = np.asarray(ids, dtype=np.int64)
        total = np.zeros(self.layout.num_filters, dtype=np.float64)
        for start in range(0, ids.size, MEAN_BLOCK_ROWS):
            total += np.asarray(self.profiles_std[ids[start : start + MEAN_BLOCK_ROWS]]).sum(axis=0, dtype=np.float64)
        return total / ids.size

    def _query_vector(self, query, matrix: np.ndarray, space: str) -> tuple[int | None, np.ndarray]:
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            if not 0 <= query < self.num_samples:
                raise PSSError(f"sample id {query} out of range; there are {self.num_samples} samples (0..{self.num_samples - 1})")
            return int(query), np.asarray(matrix[int(query)], dtype=np.float32)
        try:
            vector = np.asarray(query, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise PSSError(f"a query must be a sample id or a vector, got {type(query).__name__}") from exc
        if vector.shape[0] != matrix.shape[1]:
            kind = "standardized profile" if space == "saliency" else "feature vector"
            raise PSSError(f"a {kind} query needs {matrix.shape[1]} values, got {vector.shape[0]}")
        if not np.all(np.isfinite(vector)):
            raise PSSError("the query vector contains NaN or infinite values")
        return None, vector

    def _features_norms(self) -> np.ndarray:
        """``[N, 2]`` sums of squares of the stored features (one pass, on the first feature query)."""
        with self._lock:
            if self._feature_norms is None:
                self._feature_norms = search.prefix_squares(self.features, [0, self.features.shape[1]])
            return self._feature_norms

    def __repr__(self) -> str:
        return (f"Artifacts({self.directory}, {self.num_samples} samples, {self.layout.num_filters} filters, "
                f"index={self.index_kind})")
