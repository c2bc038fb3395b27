"""Uploads over the real server: the views match computations done here, and every awkward or hostile file
gets either the right answer or a clear 413/415/422."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from backend.data import preprocess_upload
from backend.data import model_input_transform
from backend.render import overlay, png_bytes
from backend.saliency import filter_saliency, input_saliency, prune_filters

from . import images
from .test_routes import assert_clean_error, decode_png, softmax

MB = 1024 * 1024


def upload(client, data: bytes, filename: str = "image.png", label: int | None = None):
    form = {"label": str(label)} if label is not None else None
    return client.post("/api/uploads", files={"file": (filename, data, "application/octet-stream")}, data=form)


def probs_of(client, data: bytes, filename: str = "image.png") -> np.ndarray:
    response = upload(client, data, filename)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["probs"])


@pytest.fixture(scope="module")
def uploaded(server, reference):
    """One upload with a true label, and what the model says about it when computed here."""
    pil = images.pattern(36, 30, seed=5)
    with server.client() as http:
        response = upload(http, images.encode(pil, "PNG"), label=3)
    assert response.status_code == 200, response.text
    x, display = preprocess_upload(pil, reference.spec)
    with torch.no_grad():
        logits = reference.model(x[None])
        features = reference.model.features(x[None])[0].numpy()
    raw = filter_saliency(reference.model, x[None], torch.tensor([3]))[0].numpy()
    return {
        "body": response.json(),
        "x": x,
        "display": display,
        "probs": softmax(logits)[0],
        "z": reference.artifacts.stats.standardize(raw),
        "raw": raw,
        "features": features,
    }


def test_upload_prediction_and_detail(client, uploaded):
    body = uploaded["body"]
    assert np.allclose(body["probs"], uploaded["probs"], atol=1e-6)
    assert body["pred"] == int(np.argmax(uploaded["probs"])) and body["label"] == 3
    detail = client.get(f"/api/uploads/{body['id']}").json()
    assert detail["label"] == 3 and detail["saliency_label"] == 3 and detail["pred"] == body["pred"]
    assert detail["loss"] == pytest.approx(-np.log(uploaded["probs"][3]), rel=1e-4)


def test_upload_views_match_the_engine(client, reference, uploaded):
    uid = uploaded["body"]["id"]
    profile = client.get(f"/api/uploads/{uid}/profile").json()
    assert np.allclose(profile["z"], uploaded["z"], atol=1e-4)
    top = client.get(f"/api/uploads/{uid}/filters", params={"top": 5}).json()
    assert [f["filter"] for f in top] == list(np.argsort(-np.asarray(profile["z"]), kind="stable")[:5])
    assert np.allclose([f["raw"] for f in top], uploaded["raw"][[f["filter"] for f in top]], rtol=1e-5)

    pixels = decode_png(client.get(f"/api/uploads/{uid}/image.png").content)
    factor = pixels.shape[0] // uploaded["display"].shape[0]
    assert np.array_equal(pixels[::factor, ::factor, 0], uploaded["display"])

    heat = input_saliency(reference.model, uploaded["x"], 3, reference.artifacts.stats, top_k=6, boost=100.0)
    expected = decode_png(png_bytes(overlay(uploaded["display"], heat.numpy()), upscale_to=224))
    got = client.get(f"/api/uploads/{uid}/input-saliency.png", params={"top_k": 6})
    assert np.array_equal(decode_png(got.content), expected)

    saliency = client.get(f"/api/uploads/{uid}/neighbors", params={"k": 5}).json()
    want = reference.artifacts.neighbors(np.asarray(profile["z"], dtype=np.float32), k=5)
    assert [n["id"] for n in saliency] == [w["id"] for w in want]
    ranged = client.get(f"/api/uploads/{uid}/neighbors", params={"k": 5, "layers": "3:9"}).json()
    want = reference.artifacts.neighbors(np.asarray(profile["z"], dtype=np.float32), k=5, layers=(3, 9))
    assert [n["id"] for n in ranged] == [w["id"] for w in want]
    feature = client.get(f"/api/uploads/{uid}/neighbors", params={"k": 5, "space": "feature"}).json()
    want = reference.artifacts.neighbors(uploaded["features"], k=5, space="feature")
    assert [n["id"] for n in feature] == [w["id"] for w in want]


def test_upload_prune(client, reference, uploaded):
    uid = uploaded["body"]["id"]
    body = client.post(f"/api/uploads/{uid}/prune", json={"top_k": 4, "mode": "salient", "neighbors": 3}).json()
    assert body["filters"] == sorted(np.argsort(-uploaded["z"], kind="stable")[:4].tolist())
    with torch.no_grad(), prune_filters(reference.model, body["filters"]):
        after = softmax(reference.model(uploaded["x"][None]))[0]
    assert np.allclose(body["before"]["probs"], uploaded["probs"], atol=1e-6)
    assert np.allclose(body["after"]["probs"], after, atol=1e-6)
    assert len(body["neighbors"]) == 3


def test_upload_without_label_profiles_the_prediction(client):
    body = upload(client, images.encode(images.pattern(seed=9), "PNG")).json()
    detail = client.get(f"/api/uploads/{body['id']}").json()
    assert detail["label"] is None and detail["loss"] is None and detail["saliency_label"] == body["pred"]


# ---------------------------------------------------------------------------- converted correctly
def equivalent_case(reference, case: str):
    background = model_input_transform(reference.spec).background
    return {
        "exif-rotated": images.exif_rotated,
        "cmyk": images.cmyk,
        "16-bit": images.sixteen_bit,
        "palette": images.palette,
        "rgba": lambda: images.rgba(background),
        "animated-png": lambda: images.animated("PNG"),
        "animated-webp": lambda: images.animated("WEBP"),
    }[case]()


@pytest.mark.parametrize(
    "case", ["exif-rotated", "cmyk", "16-bit", "palette", "rgba", "animated-png", "animated-webp"]
)
def test_awkward_images_give_the_answer_of_their_plain_equivalent(client, reference, case):
    data, plain = equivalent_case(reference, case)
    assert np.allclose(probs_of(client, data), probs_of(client, images.encode(plain, "PNG")), atol=1e-6)


def test_exif_rotation_matters(client):
    """Guards the test above: the sideways pixels do give another answer than the upright ones."""
    data, upright = images.exif_rotated()
    sideways = Image.open(io.BytesIO(data)).convert("RGB")
    assert not np.allclose(probs_of(client, images.encode(sideways, "PNG")), probs_of(client, images.encode(upright, "PNG")))


def test_extension_is_ignored_content_decides(client):
    data = images.encode(images.pattern(seed=4), "PNG")
    assert np.allclose(probs_of(client, data, "photo.jpg"), probs_of(client, data, "photo.png"))
    assert np.allclose(probs_of(client, data, "no-extension"), probs_of(client, data, "photo.png"))
    assert_clean_error(upload(client, b"MZ\x90\x00 definitely not an image", "photo.png"), 415)


# -------------------------------------------------------------------------------------- rejected
@pytest.mark.parametrize(
    "data, status",
    [
        (b"", 422),
        (b"just some text\n" * 10, 415),
        (images.encode(images.pattern(), "GIF"), 415),
        (images.encode(images.pattern(64, 64), "PNG")[:300], 422),
        (images.encode(images.pattern(64, 64), "JPEG")[:400], 422),
        (images.png_with_size(8000, 6000), 413),  # 48 megapixels in the header, 70 bytes of data
    ],
    ids=["empty", "text", "gif", "truncated-png", "truncated-jpeg", "pixel-bomb"],
)
def test_bad_uploads(client, data, status):
    assert_clean_error(upload(client, data), status)


def test_bad_labels_and_missing_file(client):
    data = images.encode(images.pattern(), "PNG")
    assert_clean_error(upload(client, data, label=10), 422)
    assert_clean_error(client.post("/api/uploads", files={"file": ("a.png", data)}, data={"label": "cat"}), 422)
    assert_clean_error(client.post("/api/uploads", data={"label": "1"}), 422)
    assert_clean_error(client.post("/api/uploads", content=b"raw bytes", headers={"content-type": "image/png"}), 422)


def test_body_over_10mb_with_content_length(client):
    response = upload(client, os.urandom(10 * MB + 1024))
    assert "content-length" in {k.lower() for k in response.request.headers}
    assert_clean_error(response, 413)


def chunked_multipart(payload: bytes, chunk: int = 256 * 1024):
    boundary = "pss-test-boundary"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        for start in range(0, len(payload), chunk):
            yield payload[start : start + chunk]
        yield tail

    return body(), {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_body_over_10mb_chunked_without_content_length(client):
    content, headers = chunked_multipart(os.urandom(12 * MB))
    response = client.post("/api/uploads", content=content, headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_clean_error(response, 413)


def test_small_chunked_upload_is_accepted(client):
    data = images.encode(images.pattern(seed=6), "PNG")
    content, headers = chunked_multipart(data, chunk=100)
    response = client.post("/api/uploads", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["probs"], probs_of(client, data))


def test_server_still_healthy_after_bad_uploads(client):
    assert client.get("/api/health").json()["ready"] is True
    assert probs_of(client, images.encode(images.pattern(seed=8), "JPEG")).shape == (10,)


def test_upload_views_keep_the_small_json_cap(client):
    uid = upload(client, images.encode(images.pattern(seed=3), "PNG")).json()["id"]
    assert_clean_error(client.post(f"/api/uploads/{uid}/prune", json={"filters": list(range(20000))}), 413)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_corrupted_files_are_rejected_cleanly(server, fmt):
    """Seeded random byte damage to valid files: the decoder either succeeds or raises UploadRejected (4xx),
    never anything that would become a 500."""
    from backend.api.images import UploadRejected

    exif = Image.Exif()
    exif[0x0112] = 3
    kwargs = {"exif": exif.tobytes()} if fmt in ("JPEG", "WEBP") else {}
    original = bytearray(images.encode(images.pattern(48, 40), fmt, **kwargs))
    rng = np.random.default_rng(0)
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(150):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), size=rng.integers(1, 8)):
            damaged[position] = rng.integers(0, 256)
        if rng.random() < 0.3:
            damaged = damaged[: rng.integers(1, len(damaged))]
        try:
            server.service.decode(bytes(damaged))
            outcomes["ok"] += 1
        except UploadRejected as exc:
            assert exc.status in (413, 415, 422)
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 0


def test_upload_typicality_is_its_nearest_feature_neighbour_against_the_dataset(server, uploaded):
    from backend.store.typicality import reference_similarities

    upload_id = uploaded["body"]["id"]
    with server.client() as http:
        answer = http.get(f"/api/uploads/{upload_id}/typicality").json()
        assert http.get("/api/uploads/12345/typicality").status_code == 404
    features = np.asarray(server.service.artifacts.features, dtype=np.float64)
    query = np.asarray(server.service.upload(upload_id).features, dtype=np.float64)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    nn = float((unit @ (query / np.linalg.norm(query))).max())
    assert abs(answer["nn_similarity"] - nn) < 1e-5
    reference = reference_similarities(server.service.artifacts.features)
    assert answer["percentile"] == 100.0 * np.mean(reference <= answer["nn_similarity"])
    assert answer["reference_rows"] == len(reference) and "feature" in answer["statistic"]
