"""The HTTP client against a fake backend: right routes and parameters, errors as BackendError."""

import socket
import time

import pytest

from app.client import BackendClient, BackendError, Subject

S3 = Subject("samples", "3")


def test_info_is_cached_and_typed(client, fake):
    info = client.info()
    assert info["classes"] == ["cat", "dog", "bird"]
    client.info()
    assert sum(1 for r in fake.requests if r[1] == "/api/info") == 1


def test_samples_sends_filters(client, fake):
    page = client.samples(correct=False, true_class=1, sort="confidence", offset=2, limit=5)
    method, path, query, _ = fake.requests[-1]
    assert (method, path) == ("GET", "/api/samples")
    assert query == {"correct": "false", "true_class": "1", "sort": "confidence", "offset": "2", "limit": "5"}
    assert all(it["label"] == 1 and it["label"] != it["pred"] for it in page["items"])


def test_per_sample_routes(client, fake):
    assert client.sample(S3)["id"] == 3
    assert client.image_png(S3).startswith(b"\x89PNG")
    assert len(client.filters(S3, top=5)) == 5
    assert fake.requests[-1][2] == {"top": "5"}
    assert len(client.profile(S3)["z"]) == 12
    assert client.input_saliency_png(S3, top_k=7, boost=30).startswith(b"\x89PNG")
    assert fake.requests[-1][1:3] == ("/api/samples/3/input-saliency.png", {"top_k": "7", "boost": "30.0"})
    hits = client.neighbors(S3, k=4, layers=(1, 3), space="feature", misclassified_only=True)
    assert fake.requests[-1][2] == {"k": "4", "layers": "1:3", "space": "feature", "misclassified_only": "true"}
    assert len(hits) <= 4


def test_prune_body(client, fake):
    result = client.prune(S3, filters=[5, 2])
    assert fake.requests[-1][3] == b'{"filters":[5,2]}'
    assert result["filters"] == [2, 5]
    client.prune(S3, top_k=3, mode="random")
    assert fake.requests[-1][3] == b'{"top_k":3,"mode":"random"}'
    with pytest.raises(ValueError):
        client.prune(S3)


def test_uploads_use_their_own_prefix(client, fake):
    up = client.upload("x.png", b"\x89PNG....", label=2)
    method, path, _, body = fake.requests[-1]
    assert (method, path) == ("POST", "/api/uploads")
    assert b'name="label"' in body and b'filename="x.png"' in body
    client.sample(Subject("uploads", str(up["id"])))
    assert fake.requests[-1][1] == "/api/uploads/424242"


def test_error_detail_becomes_message(client):
    with pytest.raises(BackendError) as err:
        client.sample(Subject("samples", "999"))
    assert err.value.status == 404 and err.value.message == "no sample 999"


def test_validation_errors_are_one_line(client):
    with pytest.raises(BackendError) as err:
        client.sample(Subject("samples", "abc"))
    assert err.value.status == 422 and err.value.message == "sample_id: Input should be a valid integer"


def test_busy_backend_says_so(client, fake):
    fake.overrides["/api/info"] = (503, {"detail": "too many computations"})
    with pytest.raises(BackendError) as err:
        client.info()
    assert err.value.status == 503
    assert "busy" in err.value.message and "retry in 1 s" in err.value.message


def test_upload_rejection(client):
    with pytest.raises(BackendError) as err:
        client.upload("notes.txt", b"hello")
    assert err.value.status == 415 and "not an image" in err.value.message


def test_unreachable_backend():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = BackendClient(f"http://127.0.0.1:{port}")
    with pytest.raises(BackendError) as err:
        client.health()
    assert err.value.status is None and "cannot reach" in err.value.message and "retries" in err.value.message


def test_timeout(fake):
    fake.delay = 0.5
    client = BackendClient(fake.url, timeout=0.1)
    with pytest.raises(BackendError) as err:
        client.health()
    assert err.value.status == 504


def test_prefetched_map_is_requested_once(client, fake):
    fake.delay = 0.2
    client.prefetch_input_saliency(S3, top_k=5, boost=100)
    png = client.input_saliency_png(S3, top_k=5, boost=100.0)  # joins the running request
    assert png.startswith(b"\x89PNG")
    assert sum(1 for r in fake.requests if r[1].endswith("input-saliency.png")) == 1
    client.input_saliency_png(S3, top_k=6, boost=100.0)
    assert sum(1 for r in fake.requests if r[1].endswith("input-saliency.png")) == 2


def test_failed_map_is_asked_again(client, fake):
    fake.overrides["/api/samples/3/input-saliency.png"] = (503, {"detail": "busy"})
    with pytest.raises(BackendError):
        client.input_saliency_png(S3)
    del fake.overrides["/api/samples/3/input-saliency.png"]
    assert client.input_saliency_png(S3).startswith(b"\x89PNG")


def test_parallel_calls_keep_order_and_errors(client):
    info, detail = client.parallel(client.info, lambda: client.sample(S3))
    assert info["model"] == "fake" and detail["id"] == 3
    with pytest.raises(BackendError):
        client.parallel(client.info, lambda: client.sample(Subject("samples", "999")))


def test_experiments_routes(client, fake):
    fake.overrides["/api/experiments"] = (200, {"experiments": ["pruning"]})
    fake.overrides["/api/experiments/pruning"] = (200, {"num_samples": 3})
    assert client.experiments() == {"experiments": ["pruning"]}
    assert client.experiments("pruning") == {"num_samples": 3}
    fake.overrides["/api/experiments/nope"] = (404, {"detail": "no experiment nope"})
    with pytest.raises(BackendError) as err:
        client.experiments("nope")
    assert err.value.status == 404


def test_slow_maps_do_not_hold_up_other_calls(client, fake):
    fake.overrides["/api/health"] = (200, {"status": "ok", "ready": True})
    fake.delay = 0.3
    for top_k in range(1, 5):  # more slow maps than the map pool has threads
        client.prefetch_input_saliency(S3, top_k=top_k)
    start = time.perf_counter()
    client.parallel(client.health, client.health)
    assert time.perf_counter() - start < 0.3 * 2  # not queued behind the maps


def test_confusion_and_group_routes(client, fake):
    pair = next((int(t), int(p)) for t, p in zip(fake.labels, fake.preds) if t != p)
    plain = client.confusion(*pair, top=3)
    assert fake.requests[-1][1:3] == (f"/api/confusions/{pair[0]}/{pair[1]}", {"top": "3"})
    assert plain["profile"] is None and len(plain["top_filters"]) == 3
    assert len(client.confusion(*pair, profile=True)["profile"]) == 12
    assert fake.requests[-1][2] == {"top": "20", "profile": "true"}
    client.group_intervention("prune", {"confusion": list(pair)}, top_k=4)
    assert fake.requests[-1][:2] == ("POST", "/api/groups/prune")
    assert client.group_export("prune", {"confusion": list(pair)}, top_k=4).startswith(b"weights for ")
