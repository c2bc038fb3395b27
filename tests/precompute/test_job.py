"""The precompute job in-process: stored values equal the engine's, skip/refuse/force rules, approximate indexes."""

import json
import logging

import numpy as np
import pytest
import torch

from backend.errors import PSSError
from backend.saliency import SaliencyStats, filter_saliency
from backend.store import Artifacts, IndexRecord
from precompute.job import run_precompute
from tests.precompute.tiny import SyntheticDataset, build_artifacts, small_demo_checkpoint, tiny_model


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "flat"
    model, dataset, _ = build_artifacts(out, n=100, shard_size=24, batch_size=10)
    return Artifacts.open(out), model, dataset


@pytest.mark.parametrize("sample", [0, 23, 24, 57, 99])  # shard edges included
def test_stored_raw_profile_equals_filter_saliency(flat, sample):
    artifacts, model, dataset = flat
    image, label = dataset[sample]
    expected = filter_saliency(model, image[None], torch.tensor([label]))[0].numpy()
    stored = np.asarray(artifacts.profiles_raw[sample])
    assert np.linalg.norm(stored - expected) <= 1e-5 * np.linalg.norm(expected)


def test_predictions_features_and_stats(flat):
    artifacts, model, dataset = flat
    with torch.no_grad():
        logits = model(dataset.images)
        features = model.features(dataset.images)
    np.testing.assert_allclose(artifacts.probs, torch.softmax(logits, 1).numpy(), atol=1e-5)
    np.testing.assert_array_equal(artifacts.preds, logits.argmax(1).numpy())
    np.testing.assert_allclose(artifacts.loss, torch.nn.functional.cross_entropy(logits, dataset.labels, reduction="none").numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(artifacts.features, features.numpy(), rtol=1e-5, atol=1e-6)
    assert artifacts.manifest.engine.feature_layer == "head"

    raw = np.asarray(artifacts.profiles_raw)
    whole = SaliencyStats().update(raw)  # one batch: no shard merging at all
    assert artifacts.stats.count == len(dataset)
    np.testing.assert_allclose(artifacts.stats.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(artifacts.stats.std, whole.std, rtol=1e-10)
    np.testing.assert_array_equal(artifacts.profiles_std, artifacts.stats.standardize(raw))


def test_manifest_contents(flat):
    artifacts, model, dataset = flat
    m = artifacts.manifest
    assert m.num_samples == 100 and m.num_classes == 3 and m.num_filters == 16
    assert m.data.fingerprint == dataset.fingerprint()
    assert m.engine.batch_size == 10 and m.engine.shard_size == 24
    assert {"torch", "numpy", "faiss"} <= set(m.versions)
    assert m.index == IndexRecord("flat", None, {})
    assert m.files["profiles_std.npy"] == {"bytes": (artifacts.directory / "profiles_std.npy").stat().st_size,
                                              "shape": [100, 16], "dtype": "<f4"}
    assert not (artifacts.directory / ".shards").exists()


def test_dataloader_path_gives_identical_arrays(flat, tmp_path):
    artifacts, model, _ = flat
    run_precompute(model, SyntheticDataset(100, bulk=False), tmp_path / "loader", model_spec="tiny", data_spec="synthetic",
                   batch_size=10, shard_size=24, show_progress=False)
    other = Artifacts.open(tmp_path / "loader")
    for name in ("profiles_raw", "profiles_std", "features", "probs", "labels", "preds"):
        np.testing.assert_array_equal(getattr(other, name), getattr(artifacts, name), err_msg=name)


def test_limit_takes_the_first_samples(tmp_path):
    _, dataset, manifest = build_artifacts(tmp_path / "a", n=60, limit=25)
    artifacts = Artifacts.open(tmp_path / "a")
    assert artifacts.num_samples == 25 and manifest.data.limit == 25
    np.testing.assert_array_equal(artifacts.labels, dataset.labels[:25].numpy())


def test_up_to_date_dir_is_skipped_other_job_refused_force_recomputes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="precompute")
    out = tmp_path / "a"
    _, _, first = build_artifacts(out, n=40)
    written = (out / "profiles_raw.npy").stat().st_mtime_ns
    again = build_artifacts(out, n=40)[2]
    assert again == first and "up to date" in caplog.text
    assert (out / "profiles_raw.npy").stat().st_mtime_ns == written
    with pytest.raises(PSSError, match="another job.*--force"):
        build_artifacts(out, n=40, batch_size=8)
    with pytest.raises(PSSError, match="another job"):
        build_artifacts(out, n=40, index="sq8")
    Artifacts.open(out)  # a refused run leaves the old artifacts intact
    forced = build_artifacts(out, n=40, batch_size=8, force=True)[2]
    assert forced.engine.batch_size == 8
    assert Artifacts.open(out).manifest.job_key == forced.job_key != first.job_key


def test_unfinished_shards_of_another_job_are_refused(tmp_path):
    out = tmp_path / "a"
    build_artifacts(out, n=40)
    (out / "manifest.json").unlink()
    (out / ".shards").mkdir()
    (out / ".shards" / "job.json").write_text(json.dumps({"key": "someone else"}))
    with pytest.raises(PSSError, match="unfinished shards of a different job"):
        build_artifacts(out, n=40)


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(PSSError, match="unknown index kind"):
        build_artifacts(tmp_path / "a", index="hnsw")
    with pytest.raises(PSSError, match="no module named 'nope'"):
        build_artifacts(tmp_path / "b", feature_layer="nope")
    dataset = SyntheticDataset(20)
    dataset.labels[3] = 7
    with pytest.raises(PSSError, match="outside the dataset's 3 classes"):
        run_precompute(tiny_model(), dataset, tmp_path / "c", model_spec="tiny", data_spec="s", show_progress=False)


def test_feature_layer_override(tmp_path):
    model, dataset, manifest = build_artifacts(tmp_path / "a", n=30, feature_layer="pool")
    artifacts = Artifacts.open(tmp_path / "a")
    with torch.no_grad():
        pool_input = torch.flatten(model.body(dataset.images[:30]), 1).numpy()  # [30, 6 * 4 * 4]
    np.testing.assert_allclose(artifacts.features, pool_input, rtol=1e-5, atol=1e-6)
    assert manifest.engine.feature_layer == "pool"


@pytest.mark.parametrize("kind", ["sq8", "ivf", "ivfpq"])
def test_approximate_index_recall_is_measured(tmp_path, kind):
    """The stored recall@10 equals an independent count: N < 200, so every sample was a query."""
    import faiss

    build_artifacts(tmp_path / kind, n=150, index=kind)
    artifacts = Artifacts.open(tmp_path / kind)
    index = faiss.read_index(str(tmp_path / kind / "index.faiss"))
    z = np.asarray(artifacts.profiles_std, np.float64)
    cosine = (z @ z.T) / np.outer(np.linalg.norm(z, axis=1), np.linalg.norm(z, axis=1))
    np.fill_diagonal(cosine, -np.inf)
    exact = np.argsort(-cosine, axis=1)[:, :10]
    unit = (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    _, approx = index.search(unit, 11)
    hits = sum(len(set(e) & set([i for i in a if i != q][:10])) for q, (e, a) in enumerate(zip(exact, approx)))
    recall = artifacts.manifest.index.recall_at_10
    assert 0 < recall <= 1 and recall == pytest.approx(hits / (10 * len(z)))
    # Queries without a layer range go through this index, and honour misclassified_only.
    wrong = ~artifacts.correct
    got = artifacts.neighbors(4, k=10, misclassified_only=True)
    assert got and all(wrong[h["id"]] for h in got) and all(h["id"] != 4 for h in got)
    if kind in ("ivf", "ivfpq"):
        assert artifacts.manifest.index.params["nlist"] >= 1 and artifacts.manifest.index.params["nprobe"] >= 1
    if kind == "ivfpq":  # codes of a divisor of the profile length, at most 8 bits (150 rows train 2 bits)
        params = artifacts.manifest.index.params
        assert z.shape[1] % params["pq_bytes"] == 0 and params["pq_bits"] == 1 and index.sa_code_size() < z.shape[1]
    # A layer range never goes through the approximate index: it is exact.
    start, stop = artifacts.layout.filter_range(1, 3)
    sub = z[:, start:stop]
    sub_cos = (sub @ sub[4]) / (np.linalg.norm(sub, axis=1) * np.linalg.norm(sub[4]))
    sub_cos[4] = -np.inf
    assert [h["id"] for h in artifacts.neighbors(4, k=10, layers=(1, 3))] == np.argsort(-sub_cos)[:10].tolist()


def test_cli_on_real_specs(tmp_path, capsys, keep_torch_threads):
    """`pss precompute` resolves real model/data specs; the result passes the backend's match check."""
    from backend.cli import main
    from backend.data import load_dataset
    from backend.models import load_model, weights_sha256
    from backend.saliency import FilterLayout

    spec = small_demo_checkpoint(tmp_path / "demo.pt")
    args = ["precompute", "--model", spec, "--data", "fashion-mnist:test", "--out", str(tmp_path / "out"),
            "--limit", "40", "--shard-size", "16", "--device", "cpu", "--index", "sq8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "artifacts ready" in printed and "40 samples" in printed and "recall@10" in printed
    artifacts = Artifacts.open(tmp_path / "out")
    model = load_model(spec)
    assert artifacts.num_samples == 40 and artifacts.layout == FilterLayout.from_model(model)
    artifacts.check_matches(spec, weights_sha256(model), FilterLayout.from_model(model),
                            load_dataset("fashion-mnist:test", spec).fingerprint())
    written = (tmp_path / "out" / "profiles_raw.npy").stat().st_mtime_ns
    assert main(args) == 0  # second run: up to date, nothing recomputed
    assert (tmp_path / "out" / "profiles_raw.npy").stat().st_mtime_ns == written
