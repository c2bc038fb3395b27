"""The per-sample table: every column computed from the arrays, Parquet and CSV read back the same."""

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from precompute.analysis.export import sample_table, top_filters, write_table


def arrays(n=40, f=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    labels = rng.integers(0, classes, n)
    z = rng.integers(-3, 4, size=(n, f)).astype(np.float32)  # many ties
    return labels, probs.argmax(1), probs, rng.random(n).astype(np.float32), z


def test_top_filters_break_ties_by_filter_id(monkeypatch):
    monkeypatch.setattr("precompute.analysis.export.CHUNK_ROWS", 7)  # several chunks
    *_, z = arrays()
    filters, values = top_filters(z, 5)
    for row, got_f, got_z in zip(z, filters, values):
        order = np.lexsort((np.arange(row.size), -row))[:5]
        assert got_f.tolist() == order.tolist() and got_z.tolist() == row[order].tolist()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_table_columns_and_round_trip(tmp_path, suffix):
    labels, preds, probs, loss, z = arrays()
    wrong = np.flatnonzero(labels != preds)
    modes = np.arange(wrong.size) % 2
    xy = np.random.default_rng(1).standard_normal((wrong.size, 2)).astype(np.float32)
    table = sample_table(labels, preds, probs, loss, z, mistake_ids=wrong, failure_mode=modes, saliency_xy=xy,
                         paths=[f"img/{i}.png" for i in range(labels.size)], k=3)
    path = tmp_path / f"table{suffix}"
    assert write_table(table, path) == suffix[1:]
    back = (pq.read_table(path) if suffix == ".parquet" else pcsv.read_csv(path)).to_pydict()
    assert list(back)[:7] == ["id", "path", "label", "pred", "confidence", "loss", "correct"]
    assert back["id"] == list(range(labels.size)) and back["label"] == labels.tolist()
    np.testing.assert_allclose(back["confidence"], probs.max(1), rtol=1e-6)
    assert back["correct"] == (labels == preds).tolist()
    assert back["filter_1"] == top_filters(z, 1)[0][:, 0].tolist()
    mode_column = back["failure_mode"]
    assert [mode_column[i] for i in wrong] == modes.tolist()
    assert all(mode_column[i] is None for i in np.flatnonzero(labels == preds))
    np.testing.assert_allclose([back["saliency_y"][i] for i in wrong], xy[:, 1], rtol=1e-6)
    assert all(v is None for v in back["feature_x"])


def test_bad_extension_and_shapes_are_clear_errors(tmp_path):
    labels, preds, probs, loss, z = arrays()
    table = sample_table(labels, preds, probs, loss, z)
    with pytest.raises(ValueError, match="use one of .parquet, .pq, .csv"):
        write_table(table, tmp_path / "table.xlsx")
    with pytest.raises(ValueError, match="one value per mistake"):
        sample_table(labels, preds, probs, loss, z, mistake_ids=[0, 1], failure_mode=[0])
    with pytest.raises(ValueError, match="one row per sample"):
        sample_table(labels[:-1], preds, probs, loss, z)
