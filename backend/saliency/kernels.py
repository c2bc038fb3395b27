"""A compiled CPU kernel for per-sample conv saliency: sum of |dL_n/dW| per filter, no gradient stored.

Forming each sample's weight gradient with torch and then reducing it writes and re-reads the whole gradient;
for layers with few output positions that memory traffic costs several times the multiply-adds themselves.
``abs_grad.c`` keeps the gradient in registers instead. It is built with the system C compiler on first use
(about a second) into ``$PSS_CACHE_DIR/kernels``, keyed by its source, the compiler flags and the CPU's SIMD
level; where that fails (no compiler, read-only cache, other platform) ``abs_grad_sum`` returns None and the
callers use their torch path (the same numbers up to rounding).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("abs_grad.c")
# SIMD register bytes and flags for each level torch reports for this CPU; anything else gets plain -O3
_SIMD = {"AVX512": (64, ["-mavx512f", "-mfma"]), "AVX2": (32, ["-mavx2", "-mfma"])}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_log = logging.getLogger(__name__)


def abs_grad_sum(
    x: torch.Tensor,
    grad: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> torch.Tensor | None:
    """``[N, Cout]``: per sample, the sum over each filter's weights of |its weight gradient|.

    ``x`` is the conv's input ``[N, Cin, H, W]`` (zero padding given numerically), ``grad`` the gradient of
    its output ``[N, Cout, OH, OW]``. None where the compiled kernel does not apply: not on the CPU, a dtype
    other than float32/float64, channels per group not a multiple of the SIMD width, or no kernel built.
    """
    if x.is_cuda or x.dtype not in _SUFFIX or grad.dtype != x.dtype or x.dim() != 4:
        return None
    library = _library()
    if library is None:
        return None
    suffix = _SUFFIX[x.dtype]
    batch, cin = x.shape[:2]
    cout, out_h, out_w = grad.shape[1:]
    if (cin // groups) % getattr(library, f"pss_lanes_{suffix}")() != 0:
        return None
    if grad.stride(2) != grad.shape[3] * grad.stride(3):  # output positions must be one strided axis
        grad = grad.contiguous()
    out = torch.empty(batch, cout, dtype=x.dtype)
    status = getattr(library, f"pss_abs_grad_sum_{suffix}")(
        ctypes.c_void_p(x.data_ptr()),
        (ctypes.c_long * 4)(*x.stride()),
        ctypes.c_void_p(grad.data_ptr()),
        (ctypes.c_long * 3)(grad.stride(0), grad.stride(1), grad.stride(3)),
        ctypes.c_void_p(out.data_ptr()),
        *(ctypes.c_long(v) for v in (batch, cin, *x.shape[2:], cout, out_h, out_w)),
        *(ctypes.c_long(v) for v in (*kernel_size, *stride, *padding, *dilation, groups)),
        ctypes.c_int(torch.get_num_threads()),
    )
    if status < 0:
        raise MemoryError("abs_grad kernel: out of memory")
    if status > 0:
        _log.debug("abs_grad kernel ran on fewer threads than asked for")
    return out


def kernel_status() -> str:
    """Which CPU reduction the engine uses here, for benchmark reports."""
    library = _library()
    if library is None:
        return "torch path (no compiled kernel)"
    return f"compiled C kernel, {library.pss_lanes_f32()} float32 lanes ({torch.backends.cpu.get_cpu_capability()})"


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled kernel, built once per source/CPU level and cached on disk; None where it cannot be."""
    try:
        path = _build()
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        _log.info("compiled saliency kernel unavailable (%s); using the torch path", exc)
        return None
    for suffix in _SUFFIX.values():
        getattr(library, f"pss_lanes_{suffix}").restype = ctypes.c_int
        getattr(library, f"pss_abs_grad_sum_{suffix}").restype = ctypes.c_int
    return library


def _build() -> Path:
    compiler = c_compiler()
    vec_bytes, simd_flags = _SIMD.get(torch.backends.cpu.get_cpu_capability(), (16, []))
    flags = ["-O3", "-fPIC", "-ffp-contract=fast", f"-DVEC_BYTES={vec_bytes}", *simd_flags]
    variants = [["-DREAL_IS_DOUBLE=0"], ["-DREAL_IS_DOUBLE=1"]]  # one object per REAL (float, double)
    try:
        return build_library(_SOURCE, "abs_grad", compiler, [*flags, "-fopenmp"], variants)
    except OSError:  # a compiler without OpenMP (Apple clang): the kernel still works, on one thread
        return build_library(_SOURCE, "abs_grad", compiler, flags, variants)


def c_compiler() -> str:
    """``$CC``, else gcc, else cc; OSError when there is none."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise OSError("no C compiler found")
    return compiler


def build_library(source: Path, name: str, compiler: str, flags: list[str],
                  variants: Sequence[Sequence[str]] = ((),)) -> Path:
    """The shared library of ``source``, compiled once per variant's extra flags and linked, cached in
    ``$PSS_CACHE_DIR/kernels`` under a key of the source, compiler, flags and variants (so an edit or another
    CPU level builds anew). OSError with the compiler's message when a step fails."""
    recipe = " ".join([compiler, *flags, *(";".join(v) for v in variants)])
    key = hashlib.sha256(source.read_bytes() + recipe.encode()).hexdigest()[:16]
    cache = _cache_dir()
    target = cache / f"{name}-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        objects = []
        for number, extra in enumerate(variants):
            obj = Path(scratch) / f"{number}.o"
            _compile([compiler, *flags, *extra, "-c", str(source), "-o", str(obj)])
            objects.append(str(obj))
        built = Path(scratch) / target.name
        _compile([compiler, "-shared", *flags, *objects, "-o", str(built)])
        os.replace(built, target)  # atomic: concurrent builders (test workers, torchrun ranks) never see half a file
    return target


def _compile(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise OSError(f"{Path(command[0]).name} failed: {result.stderr.strip()[:500]}")


def _cache_dir() -> Path:
    """``$PSS_CACHE_DIR/kernels`` (default ``~/.cache/pss``), where the project keeps its other downloads too."""
    return Path(os.environ.get("PSS_CACHE_DIR", Path.home() / ".cache" / "pss")) / "kernels"
