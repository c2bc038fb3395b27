"""``manifest.json``: one typed object, written by the precompute job and read by every consumer, here only.

The file is written last and is the artifacts dir's only commit point. It records every other file's size
and shapes, so a truncated or swapped file is caught when the dir is opened.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.errors import PSSError
from backend.models import InputSpec
from backend.saliency import FilterLayout

from .atomic import write_json_atomic
from .storage import FORMATS, HALF

FORMAT = "pss-artifacts"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SALIENCY_TEXT = "mean |d CrossEntropy / dW| per filter, per sample, model in eval mode"
PARAMS = ("conv", "linear", "conv+linear")  # which weights are filters: FilterLayout.from_model(model, params=...)
STATS_TEXT = "mean and sample std (ddof=1) of raw profiles; std <= 1e-14 counts as 1"
COSINE_TEXT = "cosine (inner product of L2-normalized profiles_std)"


@dataclass(frozen=True)
class ModelRecord:
    spec: str
    weights_sha256: str
    dtype: str


@dataclass(frozen=True)
class DataRecord:
    spec: str
    fingerprint: str
    limit: int | None


@dataclass(frozen=True)
class EngineRecord:
    batch_size: int
    shard_size: int
    feature_layer: str  # the module whose input is stored as features.npy (uploads' features use it too)


@dataclass(frozen=True)
class IndexRecord:
    kind: str  # flat | sq8 | ivf
    recall_at_10: float | None = None  # measured against exact search; None for flat (exact)
    params: dict = field(default_factory=dict)  # search parameters (nlist, nprobe) and recall_queries


@dataclass(frozen=True)
class StorageRecord:
    """How each large array is stored (``storage.py``); dirs written before this record hold float32."""

    profiles_raw: str = "float32"  # float32 | bfloat16
    profiles_std: str = "float32"  # float32 | float16
    features: str = "float32"  # float32 | float16

    def __post_init__(self):
        for name, fmt in asdict(self).items():
            if fmt not in FORMATS:
                raise ValueError(f"storage.{name} is {fmt!r}, not one of {', '.join(FORMATS)}")

    @classmethod
    def for_dtype(cls, dtype: str) -> "StorageRecord":
        """The record for ``pss precompute --dtype``: float32 everywhere, or each array's 16-bit format."""
        return cls(**HALF) if dtype == "float16" else cls()


@dataclass(frozen=True)
class AnalysisRecord:
    """How the analysis artifacts (``backend.store.analysis``) were made: reference samples per filter, the two
    maps' and the failure modes' methods and parameters, so the answers can be reproduced."""

    reference_k: int
    maps: dict  # space (saliency | feature) -> method and parameters
    failure_modes: dict  # clustering method and parameters
    top_filters: int  # filters listed per failure mode


@dataclass(frozen=True)
class Manifest:
    created: str
    job_key: str
    model: ModelRecord
    data: DataRecord
    num_samples: int
    num_classes: int
    feature_dim: int
    class_names: list[str]
    accuracy: float
    layout: FilterLayout
    engine: EngineRecord
    index: IndexRecord
    versions: dict[str, str]
    files: dict[str, dict]  # file name -> {"bytes", and "shape"/"dtype" or "arrays"}
    params: str = "conv"  # which weights are filters (PARAMS); dirs written before the field are "conv"
    # the image pipeline the profiles were computed with; every consumer (datasets, uploads) uses it. None in
    # dirs written before the field: those used what the model spec gives (backend.models.model_input_spec)
    preprocess: InputSpec | None = None
    storage: StorageRecord = field(default_factory=StorageRecord)
    analysis: AnalysisRecord | None = None  # None in dirs written before the analysis artifacts

    @property
    def num_filters(self) -> int:
        return self.layout.num_filters

    @property
    def num_layers(self) -> int:
        return len(self.layout)

    # --------------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        """The on-disk form (format version 1); the prose entries are for people reading the file."""
        engine = asdict(self.engine)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": self.created,
            "job_key": self.job_key,
            "model": asdict(self.model),
            "data": asdict(self.data),
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "num_filters": self.num_filters,
            "num_layers": self.num_layers,
            "feature_dim": self.feature_dim,
            "class_names": list(self.class_names),
            "accuracy": self.accuracy,
            "layout": self.layout.to_dict(),
            "params": self.params,
            "preprocess": None if self.preprocess is None else self.preprocess.to_dict(),
            "engine": {"saliency": SALIENCY_TEXT, **engine,
                       "features": f"input of module {self.engine.feature_layer!r}", "stats": STATS_TEXT},
            "index": {"kind": self.index.kind, "metric": COSINE_TEXT, "recall_at_10": self.index.recall_at_10,
                      **self.index.params},
            "analysis": None if self.analysis is None else asdict(self.analysis),
            "versions": dict(self.versions),
            "files": self.files,
            "storage": asdict(self.storage),
        }

    @classmethod
    def from_json(cls, doc: dict) -> "Manifest":
        """Raises ``KeyError``/``TypeError``/``ValueError`` for an incomplete document (``read`` words them)."""
        engine, index = doc["engine"], dict(doc["index"])
        kind, recall = index.pop("kind"), index.pop("recall_at_10", None)
        index.pop("metric", None)
        return cls(
            created=str(doc["created"]),
            job_key=str(doc["job_key"]),
            model=ModelRecord(**doc["model"]),
            data=DataRecord(**doc["data"]),
            num_samples=int(doc["num_samples"]),
            num_classes=int(doc["num_classes"]),
            feature_dim=int(doc["feature_dim"]),
            class_names=[str(name) for name in doc["class_names"]],
            accuracy=float(doc["accuracy"]),
            layout=FilterLayout.from_dict(doc["layout"]),
            engine=EngineRecord(int(engine["batch_size"]), int(engine["shard_size"]),
                                engine.get("feature_layer") or _written_before_feature_layer(engine)),
            index=IndexRecord(str(kind), recall, index),
            versions=dict(doc["versions"]),
            files=dict(doc["files"]),
            params=_params(doc.get("params", "conv")),
            preprocess=None if doc.get("preprocess") is None else InputSpec.from_dict(doc["preprocess"]),
            storage=StorageRecord(**doc.get("storage", {})),
            analysis=None if doc.get("analysis") is None else AnalysisRecord(**doc["analysis"]),
        )

    def write(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / MANIFEST, self.to_json())

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        """The manifest of ``directory``; ``PSSError`` with a one-line reason when it is missing or unusable."""
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise PSSError(
                f"{directory} is not a finished artifacts dir: {MANIFEST} is missing "
                "(the precompute job has not completed; run or resume `pss precompute`)"
            )
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PSSError(f"{path} is unreadable or not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise PSSError(f"{path} is not a pss artifacts manifest")
        if doc.get("format_version") != FORMAT_VERSION:
            raise PSSError(f"{path} has format version {doc.get('format_version')}, this pss reads "
                           f"{FORMAT_VERSION}; rerun `pss precompute --force`")
        try:
            return cls.from_json(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PSSError(f"{path} is incomplete ({exc!r}); rerun `pss precompute --force`") from exc


def _params(value) -> str:
    if value not in PARAMS:
        raise ValueError(f"params {value!r} is not one of {', '.join(PARAMS)}")
    return str(value)


def _written_before_feature_layer(engine: dict) -> str:
    """Manifests written before the ``feature_layer`` field named the module only in the sentence
    ``input of module 'NAME'``; it is read here, once, so those dirs still open."""
    sentence = str(engine["features"])
    prefix = "input of module "
    if not sentence.startswith(prefix):
        raise ValueError(f"engine.features {sentence!r} names no module")
    return sentence[len(prefix):].strip("'\"")
