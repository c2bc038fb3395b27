"""`pss export` and `pss bench analysis` through the real `pss` entry point."""

import json

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from backend.cli import main
from tests.precompute.tiny import build_artifacts


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "art"
    build_artifacts(out, n=120)
    return out


def test_export_parquet_and_csv_hold_the_same_rows(artifacts, tmp_path, capsys, keep_torch_threads):
    assert main(["export", "--artifacts", str(artifacts), "--out", str(tmp_path / "t.parquet"), "--top-k", "3"]) == 0
    assert main(["export", "--artifacts", str(artifacts), "--out", str(tmp_path / "t.csv"), "--top-k", "3"]) == 0
    parquet = pq.read_table(tmp_path / "t.parquet").to_pydict()
    csv = pcsv.read_csv(tmp_path / "t.csv").to_pydict()
    assert parquet["id"] == csv["id"] == list(range(120))
    predictions = np.load(artifacts / "predictions.npz")
    z = np.load(artifacts / "profiles_std.npy")
    assert parquet["label"] == predictions["label"].tolist() and parquet["pred"] == predictions["pred"].tolist()
    best = np.lexsort((np.broadcast_to(np.arange(z.shape[1]), z.shape), -z), axis=1)[:, :3]
    assert [[parquet[f"filter_{r}"][i] for r in (1, 2, 3)] for i in range(120)] == best.tolist()
    assert "filter_4" not in parquet
    analysis = np.load(artifacts / "analysis.npz")
    mistakes = analysis["mistake_ids"].tolist()
    assert [parquet["failure_mode"][i] for i in mistakes] == analysis["failure_mode"].tolist()
    assert np.allclose([parquet["saliency_x"][i] for i in mistakes], analysis["saliency_xy"][:, 0])
    assert all(parquet["feature_y"][i] is None for i in range(120) if i not in set(mistakes))
    assert np.allclose(np.array(csv["z_1"]), np.array(parquet["z_1"]), atol=1e-6)


@pytest.mark.parametrize("args, words", [
    (["--out", "t.xlsx"], "cannot tell the format"),
    (["--out", "missing/t.csv"], "does not exist"),
    (["--out", "t.csv", "--top-k", "0"], "--top-k"),
])
def test_export_bad_flags_are_one_line(artifacts, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--artifacts", str(artifacts), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and "\n" not in err


def test_export_of_a_dir_without_the_analysis_names_the_fix(artifacts, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(artifacts, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("analysis")
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert main(["export", "--artifacts", str(old), "--out", str(tmp_path / "t.csv")]) == 2
    assert "rerun `pss precompute --force`" in capsys.readouterr().err


def test_bench_analysis_subcommand(tmp_path, capsys):
    assert main(["bench", "analysis", "--samples", "300", "--filters", "32", "--features", "8", "--classes", "4",
                 "--shard-rows", "100", "--threads", "1", "--dir", str(tmp_path)]) == 0
    assert "added by the analysis" in capsys.readouterr().out
    assert main(["bench", "analysis", "--model-only"]) == 2
    assert "--model-only needs --model" in capsys.readouterr().err
