"""Masks, one-step fine-tuning and ?target= against answers recomputed here from the engine, and the served
weights left exactly as they were."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from backend.models import weights_sha256
from backend.saliency import FilterLayout, filter_saliency, input_saliency

from .test_routes import assert_clean_error, softmax


def probs_of(model, x) -> np.ndarray:
    with torch.no_grad():
        return softmax(model(x))


def standardized(reference, raw: torch.Tensor) -> np.ndarray:
    return reference.artifacts.stats.standardize(raw.float().numpy())


def test_mask_salient_equals_recomputation(client, reference):
    sid, percent, top_k, boost = 3, 7.0, 6, 50.0
    body = client.post(f"/api/samples/{sid}/mask",
                       json={"percent": percent, "mode": "salient", "top_k": top_k, "boost": boost}).json()
    model, stats = reference.model, reference.artifacts.stats
    x, label = reference.dataset[sid][0], int(reference.artifacts.labels[sid])
    heat = input_saliency(model, x, label, stats, top_k=top_k, boost=boost)
    count = math.ceil(percent / 100 * heat.numel())
    order = torch.argsort(heat.flatten(), descending=True)
    assert body["masked_pixels"] == count
    masked = x.clone().view(x.shape[0], -1)
    masked[:, heat.flatten().topk(count).indices] = 0
    masked = masked.view_as(x)[None]
    assert float(heat.flatten()[order[count - 1]]) >= float(heat.flatten()[order[count]])  # a real threshold
    assert np.allclose(body["after"]["probs"], probs_of(model, masked)[0], atol=1e-6)
    assert np.allclose(body["before"]["probs"], reference.artifacts.probs[sid], atol=1e-6)
    z_after = standardized(reference, filter_saliency(model, masked, torch.tensor([label]))[0])
    z_before = np.asarray(reference.artifacts.profiles_std[sid])
    top = np.argsort(-z_before, kind="stable")[:top_k]
    assert [f["filter"] for f in body["filters"]] == top.tolist()
    assert np.allclose([f["z_before"] for f in body["filters"]], z_before[top], atol=1e-5)
    assert np.allclose([f["z_after"] for f in body["filters"]], z_after[top], rtol=1e-4, atol=1e-4)
    assert not np.allclose(z_after[top], z_before[top], atol=1e-3)  # masking changed the profile
    assert body["target"] == {"class": label, "source": "label"}


def test_mask_random_is_seeded_and_png_shows_the_mask(client, reference):
    params = {"percent": 10, "mode": "random", "seed": 5}
    a = client.post("/api/samples/1/mask", json=params).json()
    assert a == client.post("/api/samples/1/mask", json=params).json()
    assert a != client.post("/api/samples/1/mask", json={**params, "seed": 6}).json()
    png = client.get("/api/samples/1/mask.png", params=params)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["x-target-source"] == "label"
    masked = np.asarray(Image.open(io.BytesIO(png.content)).convert("L"))
    plain = np.asarray(Image.open(io.BytesIO(client.get("/api/samples/1/image.png").content)).convert("L"))
    assert masked.shape == plain.shape
    # each displayed pixel is 8x8 (28 -> 224); the masked ones change to the fill value (unless already it)
    changed = int((masked != plain)[::8, ::8].sum())
    assert 0 < changed <= a["masked_pixels"] == math.ceil(0.1 * 28 * 28)


def test_finetune_equals_recomputation(client, reference):
    sid = int(np.flatnonzero(~reference.artifacts.correct)[0])
    top_k, step = 8, 0.05
    body = client.post(f"/api/samples/{sid}/finetune",
                       json={"top_k": top_k, "mode": "salient", "step": step, "neighbors": 5}).json()
    z = np.asarray(reference.artifacts.profiles_std[sid])
    chosen = sorted(np.argsort(-z, kind="stable")[:top_k].tolist())
    assert body["filters"] == chosen
    ids = [sid] + [h["id"] for h in reference.artifacts.neighbors(sid, k=5, misclassified_only=True)]
    assert [n["id"] for n in body["neighbors"]] == ids[1:]
    # independently: a copy of the model, .backward(), an in-place step on the chosen rows
    model = copy.deepcopy(reference.model).eval()
    layout = FilterLayout.from_model(model)
    x = torch.stack([reference.dataset[i][0] for i in ids])
    loss = F.cross_entropy(model(x[:1]), torch.tensor([int(reference.artifacts.labels[sid])]))
    model.zero_grad()
    loss.backward()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for f in chosen:
            name, channel = layout.locate(f)
            params[name][channel] -= step * params[name].grad[channel]
    expected = probs_of(model, x)
    got = [body["after"]["probs"]] + [n["after"]["probs"] for n in body["neighbors"]]
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(expected, probs_of(reference.model, x), atol=1e-4)  # the step did something


def test_finetune_random_is_renormalized_to_the_salient_norm(client, reference):
    sid = 6
    body = client.post(f"/api/samples/{sid}/finetune", json={"top_k": 4, "mode": "random", "seed": 2,
                                                             "step": 0.01, "neighbors": 0}).json()
    salient = client.post(f"/api/samples/{sid}/finetune", json={"top_k": 4, "step": 0.01, "neighbors": 0}).json()
    model = copy.deepcopy(reference.model).eval()
    layout = FilterLayout.from_model(model)
    x = reference.dataset[sid][0][None]
    F.cross_entropy(model(x), torch.tensor([int(reference.artifacts.labels[sid])])).backward()
    params = dict(model.named_parameters())
    norm = lambda fs: math.sqrt(sum(float(params[layout.locate(f)[0]].grad[layout.locate(f)[1]].norm()) ** 2 for f in fs))
    assert body["step"] == pytest.approx(0.01 * norm(salient["filters"]) / norm(body["filters"]), rel=1e-5)
    assert salient["step"] == 0.01


def test_served_weights_never_change(client, server):
    digest = weights_sha256(server.service.model)
    assert digest == server.service.weights_sha256
    grads_before = [p.grad for p in server.service.model.parameters()]
    flags = [p.requires_grad for p in server.service.model.parameters()]
    for i in range(3):
        client.post(f"/api/samples/{i}/finetune", json={"top_k": 20, "step": 1.0, "neighbors": 2})
        client.post(f"/api/samples/{i}/mask", json={"percent": 30})
        client.post("/api/groups/finetune", json={"sample_ids": [i, i + 1], "step": 1.0, "neighbors": 2})
        client.post("/api/groups/prune", json={"sample_ids": [i, i + 2], "top_k": 30})
        client.post("/api/groups/export", json={"sample_ids": [i], "intervention": "finetune", "step": 1.0})
        client.post("/api/groups/export", json={"sample_ids": [i], "intervention": "prune"})
    assert weights_sha256(server.service.model) == digest
    assert [p.grad for p in server.service.model.parameters()] == grads_before
    assert [p.requires_grad for p in server.service.model.parameters()] == flags
    assert not server.service.model.training


def test_target_changes_the_profile_as_that_label_does(client, reference):
    sid = 5
    label = int(reference.artifacts.labels[sid])
    target = (label + 3) % len(reference.artifacts.class_names)
    body = client.get(f"/api/samples/{sid}/profile", params={"target": target}).json()
    x = reference.dataset[sid][0][None]
    expected = standardized(reference, filter_saliency(reference.model, x, torch.tensor([target]))[0])
    assert np.allclose(body["z"], expected, rtol=1e-4, atol=1e-4)
    plain = client.get(f"/api/samples/{sid}/profile").json()
    assert not np.allclose(plain["z"], expected, atol=1e-2)
    assert plain["target"] == {"class": label, "source": "label"}
    pred = int(reference.artifacts.preds[sid])
    assert body["target"] == {"class": target, "source": "predicted" if target == pred else "chosen"}
    same = client.get(f"/api/samples/{sid}/profile", params={"target": label}).json()
    assert same == plain
    filters = client.get(f"/api/samples/{sid}/filters", params={"target": target, "top": 5})
    assert [f["filter"] for f in filters.json()] == np.argsort(-expected, kind="stable")[:5].tolist()
    assert filters.headers["x-target-class"] == str(target) and filters.headers["x-target-source"] == "chosen"
    neighbours = client.get(f"/api/samples/{sid}/neighbors", params={"target": target, "k": 4})
    expected_ids = [h["id"] for h in reference.artifacts.neighbors(expected.astype(np.float32), k=5) if h["id"] != sid][:4]
    assert [n["id"] for n in neighbours.json()] == expected_ids
    heat = client.get(f"/api/samples/{sid}/input-saliency.png", params={"target": target})
    assert heat.headers["x-target-class"] == str(target)
    assert heat.content != client.get(f"/api/samples/{sid}/input-saliency.png").content
    mask = client.post(f"/api/samples/{sid}/mask", params={"target": target}, json={"top_k": 5}).json()
    assert mask["target"]["class"] == target
    assert [f["filter"] for f in mask["filters"]] == np.argsort(-expected, kind="stable")[:5].tolist()
    assert_clean_error(client.get(f"/api/samples/{sid}/profile", params={"target": 10}), 422)


def test_upload_without_label_is_against_the_prediction(client, reference):
    image = Image.fromarray(np.asarray(reference.dataset.display_image(9), dtype=np.uint8))
    data = io.BytesIO()
    image.save(data, format="PNG")
    up = client.post("/api/uploads", files={"file": ("x.png", data.getvalue(), "image/png")}).json()
    profile = client.get(f"/api/uploads/{up['id']}/profile").json()
    assert profile["target"] == {"class": up["pred"], "source": "predicted"}
    other = (up["pred"] + 1) % 10
    chosen = client.get(f"/api/uploads/{up['id']}/profile", params={"target": other}).json()
    assert chosen["target"] == {"class": other, "source": "chosen"}
    mask = client.post(f"/api/uploads/{up['id']}/mask", json={"percent": 5}).json()
    assert mask["target"]["source"] == "predicted"
    fine = client.post(f"/api/uploads/{up['id']}/finetune", json={"top_k": 5, "neighbors": 3}).json()
    assert len(fine["neighbors"]) == 3 and fine["target"]["source"] == "predicted"


@pytest.mark.parametrize("path, body", [
    ("/api/samples/1/mask", {"percent": 0}),
    ("/api/samples/1/mask", {"percent": 101}),
    ("/api/samples/1/mask", {"mode": "least"}),
    ("/api/samples/1/mask", {"top_k": 10**6}),
    ("/api/samples/1/finetune", {"step": 0}),
    ("/api/samples/1/finetune", {"top_k": 0}),
    ("/api/samples/1/finetune", {"neighbors": 1000}),
])
def test_whatif_bad_params(client, path, body):
    assert_clean_error(client.post(path, json=body), 422)
