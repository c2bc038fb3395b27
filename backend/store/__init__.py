"""The artifacts dir: atomic writes, validation on open, memory-mapped arrays and neighbour search.

``Artifacts.open(dir)`` is the reader the backend uses; ``backend.store.atomic`` has the crash-safe writers
the precompute job uses. FAISS is imported only where an index is built or read.
"""

from .artifacts import FORMAT, FORMAT_VERSION, MANIFEST, Artifacts, describe_file
from .search import INDEX_KINDS

__all__ = ["FORMAT", "FORMAT_VERSION", "INDEX_KINDS", "MANIFEST", "Artifacts", "describe_file"]
