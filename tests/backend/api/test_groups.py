"""Group what-ifs against a recomputation here: shared filters, predictions and accuracies before/after, the
dataset job for large datasets, and the exported weights loading through `checkpoint:`."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.models import load_model
from backend.saliency import FilterLayout, prune_filters

from .test_routes import assert_clean_error, softmax


def dataset_tensor(reference, ids) -> torch.Tensor:
    return torch.stack([reference.dataset[int(i)][0] for i in ids])


def predict(model, x) -> np.ndarray:
    with torch.no_grad():
        return softmax(model(x))


def group_mistakes(reference) -> list[int]:
    return np.flatnonzero(~reference.artifacts.correct)[:4].tolist()


def test_group_prune_equals_recomputation(client, reference):
    ids = group_mistakes(reference)
    body = client.post("/api/groups/prune", json={"sample_ids": ids, "top_k": 6, "neighbors": 3}).json()
    a = reference.artifacts
    mean = np.asarray(a.profiles_std[ids], dtype=np.float64).mean(axis=0)
    filters = sorted(np.argsort(-mean, kind="stable")[:6].tolist())
    assert body["filters"] == filters and body["intervention"] == "prune"
    neighbours = [h["id"] for h in a.neighbors(mean.astype(np.float32), k=3 + len(ids), misclassified_only=True)
                  if h["id"] not in ids][:3]
    assert [n["id"] for n in body["neighbors"]] == neighbours
    everything = np.arange(a.num_samples)
    with prune_filters(reference.model, filters):
        after = predict(reference.model, dataset_tensor(reference, everything))
    got = [g["after"]["probs"] for g in body["group"] + body["neighbors"]]
    assert np.allclose(got, after[ids + neighbours], atol=1e-6)
    labels = np.asarray(a.labels)
    assert body["group_accuracy"] == {"before": pytest.approx(np.mean(a.correct[ids])),
                                      "after": pytest.approx(np.mean(after[ids].argmax(1) == labels[ids]))}
    assert body["dataset_accuracy"]["before"] == pytest.approx(np.mean(a.correct))
    assert body["dataset_accuracy"]["after"] == pytest.approx(np.mean(after.argmax(1) == labels))
    assert body["dataset_job"] is None


def test_group_finetune_equals_recomputation(client, reference):
    ids = group_mistakes(reference)
    step = 0.05
    body = client.post("/api/groups/finetune", json={"sample_ids": ids, "top_k": 6, "step": step,
                                                      "neighbors": 0}).json()
    model = copy.deepcopy(reference.model).eval()
    layout = FilterLayout.from_model(model)
    x = dataset_tensor(reference, ids)
    F.cross_entropy(model(x), torch.as_tensor(np.asarray(reference.artifacts.labels)[ids])).backward()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for f in body["filters"]:
            name, channel = layout.locate(f)
            params[name][channel] -= step * params[name].grad[channel]
    assert np.allclose([g["after"]["probs"] for g in body["group"]], predict(model, x), atol=1e-5)
    assert body["neighbors"] == [] and body["neighbors_accuracy"] is None


def test_confusion_group(client, reference):
    a = reference.artifacts
    true, pred = next((int(t), int(p)) for t, p in zip(a.labels, a.preds) if t != p)
    body = client.post("/api/groups/prune", json={"confusion": [true, pred], "top_k": 3, "neighbors": 0}).json()
    expected = np.flatnonzero((np.asarray(a.labels) == true) & (np.asarray(a.preds) == pred)).tolist()
    assert [g["id"] for g in body["group"]] == expected
    assert_clean_error(client.post("/api/groups/prune", json={"sample_ids": [0], "confusion": [0, 1]}), 422)
    assert_clean_error(client.post("/api/groups/prune", json={"sample_ids": [10**6]}), 422)
    assert_clean_error(client.post("/api/groups/finetune", json={"confusion": [0, 10]}), 422)


def failure_mode_group(artifacts_dir, mode: int) -> list[int]:
    """The mistakes of failure mode ``mode``, read from the stored arrays (not from failure_modes.json)."""
    with np.load(artifacts_dir / "analysis.npz") as stored:
        return stored["mistake_ids"][stored["failure_mode"] == mode].tolist()


def test_failure_mode_group_equals_recomputation(client, reference, artifacts_dir):
    with np.load(artifacts_dir / "analysis.npz") as stored:
        modes = np.unique(stored["failure_mode"])
    mode = int(modes[-1])  # the smallest mode: its members are not simply the first mistakes
    ids = failure_mode_group(artifacts_dir, mode)
    assert 0 < len(ids) < int((~reference.artifacts.correct).sum())
    body = client.post("/api/groups/prune", json={"failure_mode": mode, "top_k": 4, "neighbors": 0}).json()
    assert [g["id"] for g in body["group"]] == ids
    mean = np.asarray(reference.artifacts.profiles_std[ids], dtype=np.float64).mean(axis=0)
    assert body["filters"] == sorted(np.argsort(-mean, kind="stable")[:4].tolist())
    with prune_filters(reference.model, body["filters"]):
        after = predict(reference.model, dataset_tensor(reference, ids))
    assert np.allclose([g["after"]["probs"] for g in body["group"]], after, atol=1e-6)
    export = client.post("/api/groups/export", json={"failure_mode": mode, "top_k": 4, "intervention": "prune"})
    assert export.status_code == 200, export.text


def test_unknown_failure_mode_is_a_clear_422(client, artifacts_dir):
    with np.load(artifacts_dir / "analysis.npz") as stored:
        count = int(np.unique(stored["failure_mode"]).size)
    for route in ("prune", "finetune", "export"):
        body = {"failure_mode": count, **({"intervention": "prune"} if route == "export" else {})}
        detail = assert_clean_error(client.post(f"/api/groups/{route}", json=body), 422)
        assert f"no failure mode {count}: failure modes are 0..{count - 1}" == detail


def test_failure_mode_group_without_analysis_says_how_to_add_it(artifacts_dir, tmp_path):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from backend.api.main import create_app
    from backend.api.settings import Settings
    from backend.store import Artifacts

    from .test_analysis_routes import strip_analysis

    old = strip_analysis(artifacts_dir, tmp_path / "old")
    app = create_app(Settings(artifacts=old, device="cpu"), service=SimpleNamespace(artifacts=Artifacts.open(old)))
    detail = assert_clean_error(TestClient(app).post("/api/groups/prune", json={"failure_mode": 0}), 422)
    assert "no filter reference samples, fingerprints, maps or failure modes" in detail
    assert "rerun `pss precompute --force`" in detail


def test_large_dataset_accuracy_is_a_job(client, reference, monkeypatch):
    from backend.api import groups

    monkeypatch.setattr(groups, "INLINE_SAMPLES", 10)
    monkeypatch.setattr(groups, "CHUNK", 16)
    ids = group_mistakes(reference)
    body = client.post("/api/groups/prune", json={"sample_ids": ids, "top_k": 6, "neighbors": 0}).json()
    assert body["dataset_accuracy"] is None and body["dataset_job"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/api/jobs/{body['dataset_job']}").json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["state"] == "done" and job["progress"] == 1.0
    with prune_filters(reference.model, body["filters"]):
        after = predict(reference.model, dataset_tensor(reference, range(reference.artifacts.num_samples)))
    assert job["result"]["after"] == pytest.approx(np.mean(after.argmax(1) == np.asarray(reference.artifacts.labels)))


@pytest.mark.parametrize("intervention", ["prune", "finetune"])
def test_export_loads_with_checkpoint_spec(client, reference, tmp_path, intervention):
    ids = group_mistakes(reference)
    params = {"sample_ids": ids, "top_k": 6, "step": 0.05, "neighbors": 0}
    answer = client.post(f"/api/groups/{intervention}", json=params).json()
    response = client.post("/api/groups/export", json={**params, "intervention": intervention})
    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    path = tmp_path / "patched.safetensors"
    path.write_bytes(response.content)
    patched = load_model(f"checkpoint:{path}:demo", "cpu")
    everything = dataset_tensor(reference, range(reference.artifacts.num_samples))
    after = predict(patched, everything)
    assert np.allclose([g["after"]["probs"] for g in answer["group"]], after[ids], atol=1e-5)
    assert answer["dataset_accuracy"]["after"] == pytest.approx(
        np.mean(after.argmax(1) == np.asarray(reference.artifacts.labels)))
    assert not np.allclose(after, predict(reference.model, everything), atol=1e-4)
