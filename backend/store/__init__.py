"""The artifacts dir: atomic writes, validation on open, memory-mapped arrays and neighbour search.

``open_run(dir, device)`` opens a dir with its model and dataset (what the API and the experiments use);
``Artifacts.open(dir)`` reads the dir alone, ``Manifest`` is its manifest; ``backend.store.atomic`` has the crash-safe writers
the precompute job uses. FAISS is imported only where an index is built or read.
"""

from .artifacts import Artifacts, describe_file
from .manifest import (
    FORMAT, FORMAT_VERSION, MANIFEST, PARAMS, AnalysisRecord, DataRecord, EngineRecord, IndexRecord, Manifest, ModelRecord,
)
from .run import Run, filter_layout, open_run
from .search import INDEX_KINDS

__all__ = [
    "FORMAT", "FORMAT_VERSION", "INDEX_KINDS", "MANIFEST", "AnalysisRecord", "Artifacts", "DataRecord", "EngineRecord", "IndexRecord",
    "Manifest", "ModelRecord", "PARAMS", "Run", "describe_file", "filter_layout", "open_run",
]
