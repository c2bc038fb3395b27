"""Half-width storage of the per-sample arrays (``pss precompute --dtype float16``), read back a slice at a time.

Each array gets the 16-bit format that fits its values (measured on the demo's 10,000 x 1,200 profiles):

- ``profiles_std`` and ``features``: IEEE ``float16`` (11 significant bits, relative rounding <= 2^-11).
  Standardized profiles cannot overflow it: with the sample std (ddof=1), ``|z| <= (N - 1) / sqrt(N)``, so
  ``|z| < 1,132`` even for ImageNet's 1.28 M images (the demo's largest is 33). Features are checked when written.
- ``profiles_raw``: ``bfloat16`` (float32's exponent, 8 significant bits, relative rounding <= 2^-8). Raw
  saliencies span many decades (the demo's run from 1e-9 to 23): in float16 38 % of them would be subnormal
  and 2 % would round to zero. numpy has no bfloat16, so the file holds the bit patterns as ``uint16``
  (``float32 = (bits.astype(uint32) << 16).view(float32)``, exactly).

Everything derived from a stored array (prefix norms, the search copy, FAISS indexes, query vectors)
is computed from the stored values, so exact search stays exact with respect to what is stored.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.errors import PSSError

DTYPES = ("float32", "float16")  # the choices of `pss precompute --dtype`
FORMATS = ("float32", "float16", "bfloat16")  # how one array is stored
HALF = {"profiles_raw": "bfloat16", "profiles_std": "float16", "features": "float16"}
_NUMPY = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": np.dtype(np.uint16)}
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def numpy_dtype(fmt: str) -> np.dtype:
    """The dtype of the ``.npy`` file holding an array stored as ``fmt``."""
    return _NUMPY[fmt]


def unit_roundoff(fmt: str) -> float:
    """Largest relative rounding error of one stored value (normal range): half a unit in the last place."""
    return {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}[fmt]


def encode(values: np.ndarray, fmt: str, what: str) -> np.ndarray:
    """float32/float64 ``values`` rounded to nearest (even) in ``fmt``; ``PSSError`` if they do not fit."""
    if fmt == "float32":
        return np.asarray(values, dtype=np.float32)
    if fmt == "bfloat16":
        bits = torch.from_numpy(np.array(values, dtype=np.float32)).to(torch.bfloat16)  # a copy: memmaps are read-only
        return bits.view(torch.int16).numpy().view(np.uint16)
    largest = float(np.abs(values).max(initial=0.0))
    if not largest <= _FLOAT16_MAX:
        raise PSSError(f"{what} reach {largest:.4g}, beyond float16's range ({_FLOAT16_MAX:g}); "
                       "rerun with --dtype float32")
    return np.asarray(values, dtype=np.float16)


def decode(stored: np.ndarray, fmt: str) -> np.ndarray:
    """float32 values of a stored slice (exact: every 16-bit value is a float32)."""
    if fmt == "bfloat16":
        return (np.asarray(stored).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(stored, dtype=np.float32)


class StoredRows:
    """A memory-mapped ``[N, D]`` array in a 16-bit format, read like a float32 array a slice at a time.

    Indexing (``rows[i]``, ``rows[a:b]``, ``rows[ids, a:b]``) reads only that part of the file and returns
    float32; nothing upcasts the whole array (``np.asarray(rows)`` does, for small arrays and tests).
    """

    def __init__(self, stored: np.ndarray, fmt: str):
        self.stored, self.format = stored, fmt
        self.shape, self.ndim = stored.shape, stored.ndim
        self.dtype = np.dtype(np.float32)  # what reading gives
        self.nbytes, self.itemsize = stored.nbytes, stored.itemsize  # what the file holds

    def __getitem__(self, key) -> np.ndarray:
        return decode(self.stored[key], self.format)

    def column_blocks(self, a: int, b: int, block_bytes: int):
        """Columns ``a:b`` of every row as float32, in consecutive blocks of rows (about ``block_bytes`` each)
        converted into one reused buffer: a scan without a new allocation per block."""
        rows = max(1, block_bytes // (4 * max(b - a, 1)))
        buffer = np.empty((rows, b - a), dtype=np.float32)
        for start in range(0, self.shape[0], rows):
            part = self.stored[start : start + rows, a:b]
            out = buffer[: part.shape[0]]
            if self.format == "bfloat16":
                bits = out.view(np.uint32)
                np.copyto(bits, part)
                bits <<= 16
            else:
                np.copyto(out, part)
            yield out

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = decode(self.stored, self.format)
        return values if dtype is None else values.astype(dtype, copy=False)


def open_rows(stored: np.ndarray, fmt: str):
    """The memory map itself when it is float32, else a ``StoredRows`` view of it."""
    return stored if fmt == "float32" else StoredRows(stored, fmt)
