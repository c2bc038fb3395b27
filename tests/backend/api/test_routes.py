"""Every route of the real server (uvicorn on a free port) against answers computed independently here."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from backend.render import overlay, png_bytes
from backend.saliency import FilterLayout, filter_saliency, input_saliency, prune_filters

from .conftest import NUM_SAMPLES


def decode_png(content: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1).float().numpy()


def assert_clean_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "Traceback" not in response.text
    return detail


# ------------------------------------------------------------------------------------ service-wide
def test_health_and_info(client, reference):
    assert client.get("/api/health").json() == {"status": "ok", "ready": True}
    info = client.get("/api/info").json()
    layout = FilterLayout.from_model(reference.model)
    assert info["num_samples"] == NUM_SAMPLES == reference.artifacts.num_samples
    assert info["num_filters"] == layout.num_filters
    assert [(l["name"], l["start"], l["stop"]) for l in info["layers"]] == layout.layers
    assert info["classes"] == reference.dataset.class_names
    assert info["accuracy"] == pytest.approx(float(np.mean(reference.artifacts.correct)))
    assert info["model"] == reference.spec and info["dataset"] == "fashion-mnist:test"
    assert info["device"] == "cpu"


def test_summary(client, reference):
    summary = client.get("/api/summary").json()
    a = reference.artifacts
    confusion = np.asarray(summary["confusion"])
    for t in range(len(a.class_names)):
        for p in range(len(a.class_names)):
            assert confusion[t, p] == np.sum((a.labels == t) & (a.preds == p))
    std = np.asarray(a.profiles_std, dtype=np.float64)
    if a.correct.any():
        assert np.allclose(summary["mean_profile_correct"], std[a.correct].mean(axis=0), atol=1e-5)
    if (~a.correct).any():
        assert np.allclose(summary["mean_profile_misclassified"], std[~a.correct].mean(axis=0), atol=1e-5)
    assert np.allclose(summary["mean_raw"], np.asarray(a.profiles_raw, dtype=np.float64).mean(axis=0), rtol=1e-5)


def test_openapi_documents_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    for kind, key in (("samples", "sample_id"), ("uploads", "upload_id")):
        for suffix in ("", "/image.png", "/filters", "/profile", "/input-saliency.png", "/neighbors", "/prune"):
            assert f"/api/{kind}/{{{key}}}{suffix}" in paths
    assert {"/api/health", "/api/info", "/api/summary", "/api/samples", "/api/uploads"} <= set(paths)
    assert "422" in paths["/api/samples/{sample_id}/neighbors"]["get"]["responses"]


# ---------------------------------------------------------------------------------------- listing
def test_listing_filters_and_pages(client, reference):
    a = reference.artifacts
    everything = client.get("/api/samples", params={"limit": 1000}).json()
    assert everything["total"] == NUM_SAMPLES
    assert [item["id"] for item in everything["items"]] == list(range(NUM_SAMPLES))
    item = everything["items"][5]
    assert (item["label"], item["pred"]) == (a.labels[5], a.preds[5])
    assert item["confidence"] == pytest.approx(float(a.probs[5, a.preds[5]]))

    pages = [client.get("/api/samples", params={"offset": o, "limit": 10}).json()["items"] for o in range(0, 70, 10)]
    assert [i["id"] for page in pages for i in page] == list(range(NUM_SAMPLES))

    wrong = client.get("/api/samples", params={"correct": "false", "limit": 1000}).json()
    assert wrong["total"] == int((~a.correct).sum())
    assert all(i["label"] != i["pred"] for i in wrong["items"])
    right = client.get("/api/samples", params={"correct": "true", "limit": 1000}).json()
    assert right["total"] + wrong["total"] == NUM_SAMPLES

    cls = int(a.labels[0])
    by_true = client.get("/api/samples", params={"true_class": cls, "limit": 1000}).json()
    assert by_true["total"] == int((a.labels == cls).sum()) and all(i["label"] == cls for i in by_true["items"])
    pred = int(a.preds[0])
    by_pred = client.get("/api/samples", params={"pred_class": pred, "limit": 1000}).json()
    assert by_pred["total"] == int((a.preds == pred).sum()) and all(i["pred"] == pred for i in by_pred["items"])

    by_loss = client.get("/api/samples", params={"sort": "loss", "limit": 1000}).json()["items"]
    losses = [float(a.loss[i["id"]]) for i in by_loss]
    assert losses == sorted(losses, reverse=True)


# ------------------------------------------------------------------------------------ sample views
def test_sample_detail(client, reference):
    a = reference.artifacts
    body = client.get("/api/samples/7").json()
    assert body["label"] == a.labels[7] and body["pred"] == a.preds[7]
    assert np.allclose(body["probs"], a.probs[7]) and body["loss"] == pytest.approx(float(a.loss[7]))
    assert body["class_names"] == a.class_names and body["correct"] == bool(a.correct[7])


def test_sample_image(client, reference):
    pixels = decode_png(client.get("/api/samples/3/image.png").content)
    display = reference.dataset.display_image(3)
    factor = pixels.shape[0] // display.shape[0]
    assert factor >= 2 and pixels.shape[:2] == (display.shape[0] * factor, display.shape[1] * factor)
    assert np.array_equal(pixels[::factor, ::factor, 0], display if display.ndim == 2 else display[..., 0])


def test_filters_and_profile(client, reference):
    a = reference.artifacts
    layout = a.layout
    z = np.asarray(a.profiles_std[11])
    top = client.get("/api/samples/11/filters", params={"top": 8}).json()
    assert [f["filter"] for f in top] == list(np.argsort(-z, kind="stable")[:8])
    for f in top:
        name, channel = layout.locate(f["filter"])
        assert (f["layer"], f["channel"], f["layer_index"]) == (name, channel, layout.layer_of(f["filter"]))
        assert f["z"] == pytest.approx(float(z[f["filter"]])) and f["raw"] == pytest.approx(float(a.profiles_raw[11, f["filter"]]))
    profile = client.get("/api/samples/11/profile").json()
    assert np.allclose(profile["z"], z) and len(profile["layers"]) == len(layout)


def test_input_saliency_matches_the_engine(client, reference):
    response = client.get("/api/samples/5/input-saliency.png", params={"top_k": 4, "boost": 50})
    assert response.headers["content-type"] == "image/png"
    image, label = reference.dataset[5]
    heat = input_saliency(reference.model, image, label, reference.artifacts.stats, top_k=4, boost=50.0)
    expected = decode_png(png_bytes(overlay(reference.dataset.display_image(5), heat.numpy()), upscale_to=224))
    assert np.array_equal(decode_png(response.content), expected)
    again = client.get("/api/samples/5/input-saliency.png", params={"top_k": 4, "boost": 50})
    assert again.content == response.content  # served from the cache, same bytes
    other = client.get("/api/samples/5/input-saliency.png", params={"top_k": 1, "boost": 50})
    assert other.status_code == 200 and other.content != response.content


def test_neighbors(client, reference):
    a = reference.artifacts
    cases = [
        ({"k": 5}, dict(k=5)),
        ({"k": 4, "layers": "1:4"}, dict(k=4, layers=(1, 4))),
        ({"k": 3, "space": "feature"}, dict(k=3, space="feature")),
        ({"k": 6, "misclassified_only": "true"}, dict(k=6, misclassified_only=True)),
    ]
    for params, kwargs in cases:
        got = client.get("/api/samples/9/neighbors", params=params).json()
        want = a.neighbors(9, **kwargs)
        assert [n["id"] for n in got] == [w["id"] for w in want], params
        assert np.allclose([n["score"] for n in got], [w["score"] for w in want])
        assert all(n["label"] == a.labels[n["id"]] and n["pred"] == a.preds[n["id"]] for n in got)
        assert 9 not in [n["id"] for n in got]
        if kwargs.get("misclassified_only"):
            assert all(n["label"] != n["pred"] for n in got)


def expected_prune(reference, ids: list[int], filters: list[int]):
    images = torch.stack([reference.dataset[i][0] for i in ids])
    with torch.no_grad():
        before = softmax(reference.model(images))
        with prune_filters(reference.model, filters):
            after = softmax(reference.model(images))
    return before, after


def test_prune_explicit_filters(client, reference):
    layout = reference.artifacts.layout
    filters = [0, 3, layout.num_filters - 1]
    body = client.post("/api/samples/2/prune", json={"filters": filters, "neighbors": 4}).json()
    assert body["filters"] == filters
    ids = [2] + [n["id"] for n in reference.artifacts.neighbors(2, k=4)]
    assert [n["id"] for n in body["neighbors"]] == ids[1:]
    before, after = expected_prune(reference, ids, filters)
    got_before = [body["before"]] + [n["before"] for n in body["neighbors"]]
    got_after = [body["after"]] + [n["after"] for n in body["neighbors"]]
    assert np.allclose([g["probs"] for g in got_before], before, atol=1e-6)
    assert np.allclose([g["probs"] for g in got_after], after, atol=1e-6)
    assert [g["pred"] for g in got_after] == list(after.argmax(1))
    assert not np.allclose(before, after)  # the pruning did something


def test_prune_modes(client, reference):
    z = np.asarray(reference.artifacts.profiles_std[4])
    salient = client.post("/api/samples/4/prune", json={"top_k": 5, "mode": "salient"}).json()
    assert salient["filters"] == sorted(np.argsort(-z, kind="stable")[:5].tolist())
    assert len(salient["neighbors"]) == 10  # the server default
    least = client.post("/api/samples/4/prune", json={"top_k": 5, "mode": "least"}).json()
    assert least["filters"] == sorted(np.argsort(z, kind="stable")[:5].tolist())
    r1 = client.post("/api/samples/4/prune", json={"top_k": 5, "mode": "random", "seed": 3}).json()
    r2 = client.post("/api/samples/4/prune", json={"top_k": 5, "mode": "random", "seed": 3}).json()
    r3 = client.post("/api/samples/4/prune", json={"top_k": 5, "mode": "random", "seed": 4}).json()
    assert r1 == r2 and r1["filters"] != r3["filters"] and len(set(r1["filters"])) == 5
    before, after = expected_prune(reference, [4], salient["filters"])
    assert np.allclose(salient["after"]["probs"], after[0], atol=1e-6)


# ------------------------------------------------------------------------------------- bad params
@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/samples/-1", 422),
        (f"/api/samples/{NUM_SAMPLES}", 404),
        ("/api/samples/99999999999999999999999999", 404),
        ("/api/samples/1.5", 422),
        ("/api/samples/abc/filters", 422),
        ("/api/samples/1/filters?top=0", 422),
        ("/api/samples/1/filters?top=100000", 422),
        ("/api/samples/1/input-saliency.png?top_k=0", 422),
        ("/api/samples/1/input-saliency.png?top_k=100000", 422),
        ("/api/samples/1/input-saliency.png?boost=0", 422),
        ("/api/samples/1/input-saliency.png?boost=-3", 422),
        ("/api/samples/1/input-saliency.png?boost=nan", 422),
        ("/api/samples/1/neighbors?k=0", 422),
        ("/api/samples/1/neighbors?k=5000", 422),
        ("/api/samples/1/neighbors?layers=5:2", 422),
        ("/api/samples/1/neighbors?layers=0:999", 422),
        ("/api/samples/1/neighbors?layers=a:b", 422),
        ("/api/samples/1/neighbors?layers=-1:3", 422),
        ("/api/samples/1/neighbors?layers=1:3&space=feature", 422),
        ("/api/samples/1/neighbors?space=pixels", 422),
        ("/api/samples?limit=0", 422),
        ("/api/samples?true_class=10", 422),
        ("/api/samples?sort=random", 422),
        ("/api/uploads/12345", 404),
        ("/api/uploads/12345/filters", 404),
    ],
)
def test_bad_parameters_get_clear_4xx(client, path, status):
    detail = assert_clean_error(client.get(path), status)
    if "layers=0:999" in path or "top=100000" in path:
        assert "[" in detail or "<=" in detail  # names the allowed range


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"filters": [1], "top_k": 2},
        {"filters": []},
        {"filters": [-1]},
        {"filters": [10**9]},
        {"filters": ["x"]},
        {"top_k": 0},
        {"top_k": 10**6},
        {"top_k": 3, "mode": "biggest"},
        {"top_k": 3, "neighbors": -1},
        {"top_k": 3, "seed": -5},
        [1, 2, 3],
    ],
)
def test_bad_prune_bodies_get_422(client, body):
    assert_clean_error(client.post("/api/samples/1/prune", json=body), 422)


def test_prune_body_not_json_and_too_large(client):
    assert_clean_error(client.post("/api/samples/1/prune", content=b"{not json", headers={"content-type": "application/json"}), 422)
    huge = {"filters": list(range(20000))}
    assert_clean_error(client.post("/api/samples/1/prune", json=huge), 413)


def test_model_untouched_by_requests(client, server):
    from backend.models import weights_sha256

    model = server.service.model
    digest = weights_sha256(model)
    client.post("/api/samples/1/prune", json={"top_k": 7})
    client.get("/api/samples/1/input-saliency.png", params={"top_k": 3})
    assert weights_sha256(model) == digest == server.service.weights_sha256
    assert not model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
