"""The store's compiled kernel (``nibble_dots.c``): integer dot products of 4-bit codes with an int8 query.

Built with the system C compiler on first use (about a second) into ``$PSS_CACHE_DIR/kernels``, keyed by the
source, the compiler and its flags (AVX-512 VNNI where ``/proc/cpuinfo`` lists it, else plain C vectorized for
AVX2 where there is AVX2: 2.4x slower than VNNI here, still ahead of a float32 scan of 8x the bytes). Where that
fails (no compiler, read-only cache, another platform) ``nibble_dots`` is None and exact search scans float32.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import subprocess
from pathlib import Path

import numpy as np

from backend.saliency.kernels import build_library, c_compiler

_SOURCE = Path(__file__).with_name("nibble_dots.c")
# SIMD levels, best first: name, the /proc/cpuinfo flags it needs, compiler flags
_SIMD = (("AVX-512 VNNI", {"avx512f", "avx512bw", "avx512_vnni"}, ["-mavx512f", "-mavx512bw", "-mavx512vnni"]),
         ("plain C, AVX2", {"avx2"}, ["-mavx2"]))
_log = logging.getLogger(__name__)


@functools.cache
def threads() -> int:
    """Threads a scan may use: the cores this process may run on (when it first asks)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def nibble_dots(plane: np.ndarray, rows: np.ndarray | None, blocks: tuple[int, int], queries: np.ndarray,
                out: np.ndarray) -> None:
    """``out[j, i] = sum(code * queries[j])`` over 64-byte blocks ``blocks`` of row ``rows[i]`` (all rows when
    None) of ``plane`` (uint8 ``[N, W]``, two codes a byte, see nibble_dots.c); ``queries`` is int8 ``[Q, 2 W]``
    with Q = 1 or 2, ``out`` int32 ``[Q, len(rows)]``. Exact integer arithmetic."""
    library = _library()
    if library is None:
        raise OSError("the nibble_dots kernel is not available")
    assert plane.dtype == np.uint8 and plane.flags.c_contiguous and queries.flags.c_contiguous
    two = len(queries) == 2
    assert queries.dtype == np.int8 and queries.shape in ((1, 2 * plane.shape[1]), (2, 2 * plane.shape[1]))
    count = plane.shape[0] if rows is None else len(rows)
    assert out.dtype == np.int32 and out.flags.c_contiguous and out.shape == (len(queries), count)
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
    library.pss_nibble_dots(
        ctypes.c_void_p(plane.ctypes.data), ctypes.c_long(plane.shape[1]),
        ctypes.c_void_p(None if rows is None else rows.ctypes.data), ctypes.c_long(count),
        ctypes.c_long(blocks[0]), ctypes.c_long(blocks[1]),
        ctypes.c_void_p(queries[0].ctypes.data), ctypes.c_void_p(queries[1].ctypes.data if two else None),
        ctypes.c_void_p(out[0].ctypes.data), ctypes.c_void_p(out[1].ctypes.data if two else None),
        ctypes.c_int(threads()))


def available() -> bool:
    return _library() is not None


def kernel_status() -> str:
    """What the exact search's first stage runs on here, for benchmark reports."""
    if _library() is None:
        return "no compiled kernel (exact queries scan float32)"
    return f"compiled C kernel ({_simd()[0]}, {threads()} threads)"


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as exc:
        _log.info("compiled search kernel unavailable (%s); exact queries scan float32", exc)
        return None
    library.pss_nibble_dots.restype = ctypes.c_int
    return library


def _simd() -> tuple[str, list[str]]:
    """The best SIMD level this CPU lists: its name and compiler flags."""
    try:
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpu = ""
    listed = set(next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("flags")), []))
    return next(((name, flags) for name, needed, flags in _SIMD if needed <= listed), ("plain C", []))


def _build() -> Path:
    return build_library(_SOURCE, "nibble_dots", c_compiler(), ["-O3", "-fPIC", "-pthread", *_simd()[1]])
