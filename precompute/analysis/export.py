"""The per-sample table of ``pss export``: one row per sample, flat columns, Parquet or CSV by extension.

Columns: ``id``, ``path`` (when given), ``label``, ``pred``, ``confidence`` (the predicted class's
probability), ``loss``, ``correct``, ``filter_1..filter_k`` and ``z_1..z_k`` (the sample's most salient
filters, largest standardized saliency first, ties by smaller filter id), ``failure_mode``, ``saliency_x``,
``saliency_y``, ``feature_x``, ``feature_y`` (null for correct samples: the maps and modes cover mistakes).
Flat columns load as they are into pandas, and a FiftyOne view can be coloured by any of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.store.analysis import load_analysis, require

from .reference import decode_keys, order_keys

TOP_K = 10
CHUNK_ROWS = 2048
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def top_filters(z_rows, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """``(filters int64 [N, k], z float32 [N, k])`` per row, best first, read chunk by chunk."""
    n, f = z_rows.shape
    k = min(k, f)
    filters, values = np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        keys = order_keys(np.asarray(z_rows[start : start + CHUNK_ROWS]), np.arange(f)[None, :])
        best = np.sort(np.partition(keys, f - k, axis=1)[:, f - k :], axis=1)[:, ::-1]
        values[start : start + CHUNK_ROWS], filters[start : start + CHUNK_ROWS] = decode_keys(best)
    return filters, values


def sample_table(
    labels, preds, probs, loss, z_rows, *, mistake_ids=None, failure_mode=None, saliency_xy=None, feature_xy=None,
    paths=None, k: int = TOP_K,
):
    """A ``pyarrow.Table`` of every sample; ``failure_mode`` and the ``*_xy`` coordinates are given for the
    samples ``mistake_ids`` in that order (as the map and failure-mode artifacts store them)."""
    import pyarrow as pa

    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    probs = np.asarray(probs)
    n = labels.size
    if preds.shape != (n,) or probs.shape[0] != n or np.shape(loss) != (n,) or z_rows.shape[0] != n:
        raise ValueError("labels, preds, probs, loss and profiles must have one row per sample")
    columns = {"id": pa.array(np.arange(n))}
    if paths is not None:
        columns["path"] = pa.array([str(p) for p in paths], type=pa.string())
    columns |= {
        "label": pa.array(labels), "pred": pa.array(preds),
        "confidence": pa.array(probs[np.arange(n), preds].astype(np.float32)),
        "loss": pa.array(np.asarray(loss, dtype=np.float32)), "correct": pa.array(labels == preds),
    }
    filters, values = top_filters(z_rows, k)
    for rank in range(filters.shape[1]):
        columns[f"filter_{rank + 1}"] = pa.array(filters[:, rank])
        columns[f"z_{rank + 1}"] = pa.array(values[:, rank])
    mistake_ids = np.asarray([] if mistake_ids is None else mistake_ids, dtype=np.int64)
    per_mistake = {"failure_mode": failure_mode}
    for space, xy in (("saliency", saliency_xy), ("feature", feature_xy)):
        xy = None if xy is None else np.asarray(xy)
        per_mistake[f"{space}_x"] = None if xy is None else xy[:, 0]
        per_mistake[f"{space}_y"] = None if xy is None else xy[:, 1]
    for name, values_of_mistakes in per_mistake.items():
        columns[name] = _scatter(n, mistake_ids, values_of_mistakes, pa.int64() if name == "failure_mode" else pa.float32())
    return pa.table(columns)


def artifacts_table(artifacts, k: int = TOP_K, analysis=None):
    """The table of an opened ``backend.store.Artifacts`` with its analysis (loaded here unless given;
    ``PSSError`` naming the fix when the dir predates it)."""

    analysis = analysis or require(load_analysis(artifacts), artifacts.directory)
    return sample_table(artifacts.labels, artifacts.preds, artifacts.probs, artifacts.loss, artifacts.profiles_std,
                        mistake_ids=analysis.mistake_ids, failure_mode=analysis.failure_mode,
                        saliency_xy=analysis.saliency_xy, feature_xy=analysis.feature_xy, k=k)


def write_table(table, path) -> str:
    """Writes ``table`` as Parquet (``.parquet``/``.pq``) or CSV (``.csv``); returns the format."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"cannot tell the format of {path.name}: use one of {', '.join(FORMATS)}")
    if kind == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    return kind


def _scatter(n: int, ids: np.ndarray, values, kind):
    """A column of ``n`` nulls with ``values`` at rows ``ids``."""
    import pyarrow as pa

    if values is None:
        return pa.nulls(n, type=kind)
    values = np.asarray(values)
    if values.shape != ids.shape:
        raise ValueError(f"expected one value per mistake ({ids.size}), got shape {values.shape}")
    mask = np.ones(n, dtype=bool)
    mask[ids] = False
    full = np.zeros(n, dtype=kind.to_pandas_dtype())
    full[ids] = values
    return pa.array(full, type=kind, mask=mask)
