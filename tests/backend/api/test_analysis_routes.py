"""The filter, confusion, map, failure-mode and export routes answer what the stored arrays imply: every
expected answer here is recomputed from profiles_std, predictions and features (and the dataset's images)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from precompute.analysis.failure_modes import cluster_points, describe_modes
from precompute.analysis.maps import embed, mistake_map, reduce_rows
from precompute.analysis.reference import DEFAULT_K, channel_maxima

TOL = 1e-5


@pytest.fixture(scope="module")
def arrays(reference):
    a = reference.artifacts
    z = np.asarray(a.profiles_std, dtype=np.float64)
    return {"z": z, "labels": np.asarray(a.labels), "preds": np.asarray(a.preds), "features": np.asarray(a.features)}


def best_first(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, ties by smaller index."""
    return np.lexsort((np.arange(values.size), -values))[:k]


def test_filter_page(client, reference, arrays):
    a, z, labels, preds = reference.artifacts, arrays["z"], arrays["labels"], arrays["preds"]
    images = torch_images(reference)
    maxima = channel_maxima(reference.model, images, a.layout).astype(np.float64)
    for f in (0, a.layout.num_filters // 2, a.layout.num_filters - 1):
        got = client.get(f"/api/filters/{f}").json()
        layer, channel = a.layout.locate(f)
        assert (got["filter"], got["layer"], got["channel"]) == (f, layer, channel)
        assert got["raw_mean"] == pytest.approx(a.stats.mean[f], rel=1e-12)
        assert got["raw_std"] == pytest.approx(a.stats.std[f], rel=1e-12)
        k = min(DEFAULT_K, a.num_samples)
        expected = best_first(z[:, f], k)
        assert [s["id"] for s in got["top_samples"]] == expected.tolist()
        np.testing.assert_allclose([s["z"] for s in got["top_samples"]], z[expected, f], rtol=0, atol=TOL)
        expected = best_first(maxima[:, f], k)
        assert [s["id"] for s in got["top_activating"]] == expected.tolist()
        np.testing.assert_allclose([s["activation"] for s in got["top_activating"]], maxima[expected, f], rtol=1e-5, atol=TOL)

        correct = labels == preds
        classes = sorted(set(labels[correct].tolist()))
        means = {c: z[correct & (labels == c), f].mean() for c in classes}
        assert [c["class"] for c in got["classes"]] == sorted(classes, key=lambda c: (-means[c], c))
        np.testing.assert_allclose([c["mean_z"] for c in got["classes"]], [means[c["class"]] for c in got["classes"]], atol=TOL)

        pairs = sorted({(t, p) for t, p in zip(labels[~correct].tolist(), preds[~correct].tolist())})
        pair_z = {pair: z[(labels == pair[0]) & (preds == pair[1]), f].mean() for pair in pairs}
        assert [(c["true"], c["pred"]) for c in got["confusions"]] == sorted(pairs, key=lambda q: (-pair_z[q], q))
        for c in got["confusions"]:
            assert c["count"] == int(((labels == c["true"]) & (preds == c["pred"])).sum())
            assert c["mean_z"] == pytest.approx(pair_z[(c["true"], c["pred"])], abs=TOL)


def torch_images(reference):
    import torch

    return torch.stack([reference.dataset[i][0] for i in range(reference.artifacts.num_samples)])


def test_confusion(client, reference, arrays):
    z, labels, preds = arrays["z"], arrays["labels"], arrays["preds"]
    wrong = labels != preds
    pairs, counts = np.unique(np.stack([labels[wrong], preds[wrong]], axis=1), axis=0, return_counts=True)
    true, pred = pairs[np.argmax(counts)].tolist()
    got = client.get(f"/api/confusions/{true}/{pred}", params={"top": 7}).json()
    members = np.flatnonzero((labels == true) & (preds == pred))
    assert got["count"] == members.size and got["sample_ids"] == members.tolist()
    mean_z = z[members].mean(axis=0)
    expected = best_first(mean_z, 7)
    assert [f["filter"] for f in got["top_filters"]] == expected.tolist()
    np.testing.assert_allclose([f["mean_z"] for f in got["top_filters"]], mean_z[expected], atol=TOL)
    assert got["top_filters"][0]["layer"] == reference.artifacts.layout.locate(int(expected[0]))[0]


def test_confusion_fingerprint(client, arrays):
    """?profile=true adds the pair's whole mean profile and its true class's correct samples' mean profile."""
    z, labels, preds = arrays["z"], arrays["labels"], arrays["preds"]
    wrong = labels != preds
    pairs = sorted(set(zip(labels[wrong].tolist(), preds[wrong].tolist())))
    correct_classes = set(labels[~wrong].tolist())
    for true, pred in pairs:
        got = client.get(f"/api/confusions/{true}/{pred}", params={"top": 3, "profile": "true"}).json()
        np.testing.assert_allclose(got["profile"], z[(labels == true) & (preds == pred)].mean(axis=0), atol=TOL)
        if true in correct_classes:
            np.testing.assert_allclose(got["class_profile"], z[~wrong & (labels == true)].mean(axis=0), atol=TOL)
        else:
            assert got["class_profile"] is None
        assert got["top_filters"][0]["mean_z"] == pytest.approx(max(got["profile"]), abs=TOL)
    plain = client.get(f"/api/confusions/{pairs[0][0]}/{pairs[0][1]}").json()
    assert plain["profile"] is None and plain["class_profile"] is None


def test_confusion_fingerprint_beside_its_true_class():
    """The tiny dir's model predicts one class only, so no confused class has correct samples there: this
    case runs on synthetic profiles, through the precompute's own fingerprint sums."""
    from types import SimpleNamespace

    from backend.api.analysis import AnalysisService
    from backend.store.analysis import Analysis
    from precompute.analysis.fingerprints import Fingerprints

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 9)).astype(np.float32)
    labels, preds = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    sums = Fingerprints(4, 9).update(z, labels, preds)
    class_ids, class_means, _ = sums.class_means()
    pair_ids, pair_means, pair_counts = sums.confusion_means()
    layout = SimpleNamespace(num_filters=9, locate=lambda i: ("conv.weight", i))
    artifacts = SimpleNamespace(layout=layout, num_classes=4, labels=labels, preds=preds, directory=None)
    service = AnalysisService(artifacts)
    service._loaded, service._analysis = True, Analysis(
        None, {"class_ids": class_ids, "class_means": class_means.astype(np.float32), "pair_ids": pair_ids,
               "pair_means": pair_means.astype(np.float32), "pair_counts": pair_counts}, [])
    for true, pred in ((1, 2), (3, 0)):
        got = service.confusion(true, pred, 3, profile=True)
        members = (labels == true) & (preds == pred)
        np.testing.assert_allclose(got["profile"], z[members].mean(axis=0), atol=TOL)
        np.testing.assert_allclose(got["class_profile"], z[(labels == true) & (preds == true)].mean(axis=0), atol=TOL)


def test_map_and_failure_modes(client, reference, arrays):
    z, labels, preds = arrays["z"], arrays["labels"], arrays["preds"]
    mistakes = np.flatnonzero(labels != preds)
    points, _ = reduce_rows(z[mistakes].astype(np.float32))
    clusters, _ = cluster_points(points)
    for space, rows in (("saliency", z[mistakes]), ("feature", arrays["features"][mistakes])):
        got = client.get("/api/map", params={"space": space}).json()
        coords, params = (embed(points) if space == "saliency" else mistake_map(rows.astype(np.float32)))
        assert got["method"] == params["method"] == reference.artifacts.manifest.analysis.maps[space]["method"]
        assert [p["id"] for p in got["points"]] == mistakes.tolist()
        np.testing.assert_allclose([[p["x"], p["y"]] for p in got["points"]], coords, atol=1e-4)
        assert [p["cluster"] for p in got["points"]] == clusters.tolist()
    modes = client.get("/api/failure-modes").json()
    expected = describe_modes(clusters, z[mistakes], labels[mistakes], preds[mistakes], mistakes)
    assert [{k: m[k] for k in ("cluster", "size", "confusions", "sample_ids")} for m in modes] == \
        [{k: m[k] for k in ("cluster", "size", "confusions", "sample_ids")} for m in expected]
    for got_mode, want in zip(modes, expected):
        assert [f["filter"] for f in got_mode["top_filters"]] == [f["filter"] for f in want["top_filters"]]
        np.testing.assert_allclose([f["mean_z"] for f in got_mode["top_filters"]],
                                   [f["mean_z"] for f in want["top_filters"]], atol=TOL)


def test_export_csv(client, reference, arrays):
    import pyarrow.csv as pcsv

    response = client.get("/api/export.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    table = pcsv.read_csv(io.BytesIO(response.content)).to_pydict()
    z, labels, preds = arrays["z"], arrays["labels"], arrays["preds"]
    assert table["id"] == list(range(labels.size)) and table["label"] == labels.tolist() and table["pred"] == preds.tolist()
    assert table["filter_1"] == [int(best_first(row, 1)[0]) for row in z]
    modes = {m["cluster"]: set(m["sample_ids"]) for m in client.get("/api/failure-modes").json()}
    for i in range(labels.size):
        mode = table["failure_mode"][i]
        assert (mode is None) == (labels[i] == preds[i])
        assert mode is None or i in modes[mode]


@pytest.mark.parametrize("path, status, words", [
    ("/api/filters/-1", 422, "index"),
    ("/api/filters/100000", 404, "no filter 100000"),
    ("/api/confusions/0/0", 422, "two different classes"),
    ("/api/confusions/10/0", 404, "no class 10"),
    ("/api/confusions/0/1?top=0", 422, "top"),
    ("/api/map?space=pixels", 422, "space must be one of saliency, feature"),
])
def test_bad_ids_and_params(client, path, status, words):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_pair_without_mistakes_is_404(client, arrays):
    labels, preds = arrays["labels"], arrays["preds"]
    seen = set(zip(labels[labels != preds].tolist(), preds[labels != preds].tolist()))
    true, pred = next((t, p) for t in range(10) for p in range(10) if t != p and (t, p) not in seen)
    response = client.get(f"/api/confusions/{true}/{pred}")
    assert response.status_code == 404 and "is predicted as" in response.json()["detail"]


def strip_analysis(artifacts_dir, old):
    """A copy of ``artifacts_dir`` as pss wrote it before the analysis artifacts existed."""
    from backend.store.analysis import ANALYSIS_FILES

    shutil.copytree(artifacts_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("analysis")
    for name in ANALYSIS_FILES:
        manifest["files"].pop(name)
        (old / name).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


def served(directory):
    """A test client of an app over ``directory`` with only the analysis routes' needs (no model)."""
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from backend.api.main import create_app
    from backend.api.settings import Settings
    from backend.store import Artifacts

    return TestClient(create_app(Settings(artifacts=directory, device="cpu"),
                                 service=SimpleNamespace(artifacts=Artifacts.open(directory))))


def test_per_filter_arrays_are_memory_mapped(artifacts_dir):
    from backend.store import Artifacts
    from backend.store.analysis import ARRAYS, MAPPED, load_analysis, mapped_file

    analysis = load_analysis(Artifacts.open(artifacts_dir))
    with np.load(artifacts_dir / "analysis.npz") as small:
        assert sorted(small.files) == sorted(set(ARRAYS) - set(MAPPED))
    for name in MAPPED:
        assert isinstance(analysis.arrays[name], np.memmap), name
        assert np.array_equal(analysis.arrays[name], np.load(artifacts_dir / mapped_file(name))), name


def test_dir_with_every_array_in_the_npz_answers_the_same(client, artifacts_dir, tmp_path):
    """Dirs written before the per-filter arrays were split out of analysis.npz still serve, unchanged."""
    from backend.store.analysis import ANALYSIS, ARRAYS, MAPPED, mapped_file
    from backend.store.artifacts import describe_file
    from backend.store.atomic import save_npz_atomic

    old = tmp_path / "packed"
    shutil.copytree(artifacts_dir, old)
    with np.load(old / ANALYSIS) as small:
        arrays = {**{k: small[k] for k in small.files}, **{k: np.load(old / mapped_file(k)) for k in MAPPED}}
    save_npz_atomic(old / ANALYSIS, {name: arrays[name] for name in ARRAYS})
    manifest = json.loads((old / "manifest.json").read_text())
    for name in MAPPED:
        (old / mapped_file(name)).unlink()
        manifest["files"].pop(mapped_file(name))
    manifest["files"][ANALYSIS] = describe_file(old / ANALYSIS)
    (old / "manifest.json").write_text(json.dumps(manifest))
    packed = served(old)
    pair = client.get("/api/failure-modes").json()[0]["confusions"][0]
    for path in ("/api/filters/0", "/api/filters/7", f"/api/confusions/{pair['true']}/{pair['pred']}",
                 "/api/map?space=feature", "/api/failure-modes", "/api/export.csv"):
        answer = packed.get(path)
        assert answer.status_code == 200 and answer.content == client.get(path).content, path


def test_export_csv_is_built_once_per_served_dir(artifacts_dir, monkeypatch):
    from backend.api import analysis as module
    from backend.store import Artifacts

    builds = []
    build = module.artifacts_table
    monkeypatch.setattr(module, "artifacts_table", lambda *a, **k: builds.append(1) or build(*a, **k))
    service = module.AnalysisService(Artifacts.open(artifacts_dir))
    first = service.export_csv()
    assert service.export_csv() == first and len(builds) == 1
    assert str(artifacts_dir) not in first.decode() and b"path" not in first.split(b"\n", 1)[0]


def test_dir_written_before_the_analysis_opens_and_says_how_to_add_it(artifacts_dir, tmp_path):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from backend.api.main import create_app
    from backend.api.settings import Settings
    from backend.store import Artifacts

    client = served(strip_analysis(artifacts_dir, tmp_path / "old"))
    for path in ("/api/filters/0", "/api/confusions/0/1", "/api/map", "/api/failure-modes", "/api/export.csv"):
        response = client.get(path)
        assert response.status_code == 422, (path, response.text)
        assert "rerun `pss precompute --force`" in response.json()["detail"]


def test_input_saliency_for_chosen_filters(client, reference):
    from backend.render import overlay, png_bytes
    from backend.saliency import input_saliency

    from .test_routes import decode_png

    image, label = reference.dataset[5]
    num_filters = reference.artifacts.layout.num_filters
    chosen = [num_filters - 1, 3]
    response = client.get("/api/samples/5/input-saliency.png", params={"filters": f"{chosen[0]},{chosen[1]}"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    heat = input_saliency(reference.model, image, label, reference.artifacts.stats, filters=sorted(chosen))
    expected = decode_png(png_bytes(overlay(reference.dataset.display_image(5), heat.numpy()), upscale_to=224))
    assert np.array_equal(decode_png(response.content), expected)
    top = client.get("/api/samples/5/input-saliency.png", params={"top_k": 2})
    assert top.content != response.content
    for bad, words in ((f"{num_filters}", "filters must be in"), ("1,,2", "filters"), ("a", "filters")):
        answer = client.get("/api/samples/5/input-saliency.png", params={"filters": bad})
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text


def test_upload_input_saliency_for_chosen_filters(client):
    from . import images
    from .test_uploads import upload

    uid = upload(client, images.encode(images.pattern(), "PNG"), label=2).json()["id"]
    chosen = client.get(f"/api/uploads/{uid}/input-saliency.png", params={"filters": "0,5"})
    top = client.get(f"/api/uploads/{uid}/input-saliency.png", params={"top_k": 2})
    assert chosen.status_code == top.status_code == 200 and chosen.content != top.content
    assert client.get(f"/api/uploads/{uid}/input-saliency.png", params={"filters": "0,5"}).content == chosen.content
    assert client.get(f"/api/uploads/{uid}/input-saliency.png", params={"filters": "-1"}).status_code == 422


def test_map_columns_hold_the_same_points(client, reference):
    from backend.store.analysis import load_analysis

    analysis = load_analysis(reference.artifacts)
    for space in ("saliency", "feature"):
        points = client.get("/api/map", params={"space": space}).json()
        columns = client.get("/api/map", params={"space": space, "format": "columns"}).json()
        assert (columns["method"], columns["params"]) == (points["method"], points["params"])
        assert columns["ids"] == [p["id"] for p in points["points"]] == analysis.mistake_ids.tolist()
        assert columns["cluster"] == [p["cluster"] for p in points["points"]] == analysis.failure_mode.tolist()
        assert columns["label"] == reference.artifacts.labels[analysis.mistake_ids].tolist()
        assert columns["pred"] == reference.artifacts.preds[analysis.mistake_ids].tolist()
        xy = getattr(analysis, f"{space}_xy")
        # the compact text reads back as exactly the stored float32 values
        assert np.array_equal(np.asarray([columns["x"], columns["y"]], dtype=np.float32).T, xy)
        assert np.array_equal(np.asarray([[p["x"], p["y"]] for p in points["points"]], dtype=np.float32), xy)
    answer = client.get("/api/map", params={"format": "rows"})
    assert answer.status_code == 422 and "format must be one of points, columns" in answer.json()["detail"]


def test_selection_filters_are_the_mean_z_over_the_selection(client, reference, arrays):
    z, labels, preds = arrays["z"], arrays["labels"], arrays["preds"]
    chosen = np.flatnonzero(labels != preds)[::3]
    asked = chosen.tolist() + chosen[:2].tolist()  # repeated ids count once
    got = client.post("/api/selection/filters", json={"sample_ids": asked, "top": 6}).json()
    mean_z = z[chosen].mean(axis=0)
    expected = best_first(mean_z, 6)
    assert got["count"] == chosen.size
    assert [f["filter"] for f in got["top_filters"]] == expected.tolist()
    np.testing.assert_allclose([f["mean_z"] for f in got["top_filters"]], mean_z[expected], rtol=0, atol=TOL)
    layout = reference.artifacts.layout
    assert [(f["layer"], f["channel"]) for f in got["top_filters"]] == [layout.locate(int(f)) for f in expected]
    one = client.post("/api/selection/filters", json={"sample_ids": [7]}).json()
    assert len(one["top_filters"]) == 20 and one["top_filters"][0]["filter"] == int(best_first(z[7], 1)[0])


@pytest.mark.parametrize("body, status, words", [
    ({"sample_ids": []}, 422, "select at least one sample"),
    ({"sample_ids": list(range(5001))}, 422, "at most 5000 sample_ids per request, got 5001"),
    ({"sample_ids": [0, 64]}, 404, "no sample 64: samples are 0..63"),
    ({"sample_ids": [-1]}, 404, "no sample -1"),
    ({"sample_ids": [2 ** 70]}, 404, f"no sample {2 ** 70}"),
    ({"sample_ids": [0], "top": 0}, 422, "top must be in [1, "),
    ({"sample_ids": ["a"]}, 422, "sample_ids"),
    ({}, 422, "sample_ids"),
])
def test_bad_selections(client, body, status, words):
    response = client.post("/api/selection/filters", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
