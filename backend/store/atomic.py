"""Crash-safe file writes: a temp file in the same directory, fsync, rename, fsync of the directory.

A reader (or a resumed job) therefore sees either the old file or the complete new one, never a torn one,
even after ``kill -9`` or a power cut. Temp files that a killed writer left behind match ``is_temp_name``.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_TEMP_MARK = ".tmp-"


def temp_path_for(path: Path) -> Path:
    """A unique hidden sibling of ``path`` (same filesystem, so the final rename is atomic)."""
    return path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and _TEMP_MARK in name


def remove_stale_temps(directory: Path) -> int:
    """Deletes temp files left by killed writers; returns how many."""
    removed = 0
    for entry in Path(directory).iterdir():
        if entry.is_file() and is_temp_name(entry.name):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def fsync_dir(directory: Path) -> None:
    """Makes renames/unlinks inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temp: Path, final: Path) -> None:
    """fsync ``temp``'s data, rename it over ``final`` and fsync the directory."""
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)
    fsync_dir(final.parent)


@contextmanager
def atomic_writer(path: str | os.PathLike):
    """``with atomic_writer(p) as f: f.write(...)``: ``p`` appears complete when the block ends, or not at all."""
    path = Path(path)
    temp = temp_path_for(path)
    try:
        with open(temp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        fsync_dir(path.parent)
    finally:
        temp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    with atomic_writer(path) as handle:
        handle.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``np.savez`` (uncompressed), but atomic and byte-reproducible: entries carry a fixed timestamp."""
    with atomic_writer(path) as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(info, buffer.getvalue())


class AtomicNpy:
    """A large ``.npy`` filled in place through a memory map, then committed atomically.

    ``with AtomicNpy(path, shape, dtype) as out: out.array[a:b] = ...``; the file appears only if the block
    completes without an exception.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype):
        self.path = Path(path)
        self.temp = temp_path_for(self.path)
        self.array = np.lib.format.open_memmap(self.temp, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
        try:  # reserve the blocks now: a full disk is then an OSError here, not a SIGBUS while filling the map
            with open(self.temp, "rb+") as handle:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except BaseException:
            del self.array
            self.temp.unlink(missing_ok=True)
            raise

    def __enter__(self) -> "AtomicNpy":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.array.flush()
                del self.array
                commit_file(self.temp, self.path)
        finally:
            self.__dict__.pop("array", None)
            self.temp.unlink(missing_ok=True)
