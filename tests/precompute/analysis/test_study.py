"""The study and bench scripts run end to end on tiny inputs; the study's numbers are the measures'."""

import json

import numpy as np

from precompute.analysis import bench, study
from precompute.analysis.evidence import confusion_ami
from precompute.analysis.failure_modes import cluster_points
from precompute.analysis.maps import reduce_rows
from tests.precompute.tiny import build_artifacts


def test_study_reports_the_measures_of_the_artifacts(tmp_path, capsys, keep_torch_threads):
    build_artifacts(tmp_path / "art", n=120)
    assert study.main(["--artifacts", str(tmp_path / "art"), "--seeds", "1", "--clusters", "3", "--min-count", "1", "--k", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    predictions = np.load(tmp_path / "art" / "predictions.npz")
    labels, preds = predictions["label"], predictions["pred"]
    wrong = np.flatnonzero(labels != preds)
    assert report["mistakes"] == wrong.size > 3
    z = np.load(tmp_path / "art" / "profiles_std.npy")
    cluster_of, _ = cluster_points(reduce_rows(z[wrong], seed=0)[0], clusters=3, seed=0)
    assert report["ami"]["saliency"]["pair"]["3"] == [round(confusion_ami(cluster_of, labels[wrong], preds[wrong]), 4)]
    assert sum(d["count"] for d in report["dominance"]) == wrong.size
    assert all(0 <= d["fraction"] <= 1 and d["references"] == 5 * 4 for d in report["dominance"])


def test_study_refuses_a_dir_without_artifacts(tmp_path, capsys):
    assert study.main(["--artifacts", str(tmp_path)]) == 2
    assert "not a finished artifacts dir" in capsys.readouterr().err


def test_bench_runs_on_a_small_size(tmp_path, capsys):
    assert bench.main(["--samples", "400", "--filters", "64", "--features", "16", "--classes", "5",
                       "--shard-rows", "128", "--threads", "1", "--dir", str(tmp_path),
                       "--model", "torchvision:resnet18", "--image-size", "32", "--batch-size", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "channel_maxima (forward + hooks)" in out and "saliency top-K" in out and "failure modes" in out and "added by the analysis" in out
    assert not list(tmp_path.iterdir())  # the synthetic data is removed


def test_bench_model_only_times_just_the_model(capsys):
    assert bench.main(["--model", "torchvision:resnet18", "--model-only", "--image-size", "32", "--batch-size", "2",
                       "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "plain forward" in out and "synthetic" not in out
