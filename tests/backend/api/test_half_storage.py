"""The same tiny artifacts stored in float32 and with ``--dtype float16``, served side by side: every route
answers the same, within the rounding of the stored values.

Tolerances come from the formats: a stored value is within ``u |v|`` of the float32 one (``u`` = 2^-11 for
float16, 2^-8 for bfloat16; plus half float16's smallest subnormal spacing, 2^-25, for tiny z). A vector
``x'`` with ``|x' - x| <= e |x|`` is at most ``asin(e)`` away from ``x`` in angle, so a cosine between two stored
vectors moves by at most ``2 asin(e)`` (cosine is 1-Lipschitz in the angle); neighbour ids must agree wherever
the float32 scores are further apart than twice that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.store import storage

from . import images
from .conftest import DATA_SPEC, NUM_SAMPLES, free_port, start_server, stop_server

U16, UBF16 = storage.unit_roundoff("float16"), storage.unit_roundoff("bfloat16")
SUBNORMAL = 2.0**-25
SAMPLES = (0, 7, 11, 40, 63)


@pytest.fixture(scope="module")
def half_server(artifacts_dir, tmp_path_factory):
    from backend.api.settings import Settings
    from backend.data import load_dataset
    from backend.models import load_model
    from backend.store import Artifacts
    from precompute.job import run_precompute

    spec = Artifacts.open(artifacts_dir).model_spec
    out = tmp_path_factory.mktemp("half") / "artifacts"
    run_precompute(load_model(spec, "cpu"), load_dataset(DATA_SPEC, spec), out, model_spec=spec, data_spec=DATA_SPEC,
                   limit=NUM_SAMPLES, batch_size=32, shard_size=32, dtype="float16", show_progress=False)
    running = start_server(Settings(artifacts=out, device="cpu", port=free_port()))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def pair(server, half_server):
    with server.client() as full, half_server.client() as half:
        yield full, half


def get_both(pair, path: str, **kwargs):
    full, half = pair
    a, b = full.get(path, **kwargs), half.get(path, **kwargs)
    assert a.status_code == b.status_code == 200, (path, a.text, b.text)
    return a, b


def cosine_tolerance(dim: int, norm: float) -> float:
    """How far a cosine between two float16-stored vectors can move (see the module docstring)."""
    relative = U16 + SUBNORMAL * math.sqrt(dim) / max(norm, 1e-30)
    return 2 * math.asin(min(1.0, relative)) + 1e-6  # + float32 arithmetic


def assert_same_neighbours(full: list[dict], half: list[dict], tolerance: float) -> None:
    """``full`` has one more neighbour than ``half`` asked for, to see the gap after the last one."""
    assert len(half) == len(full) - 1
    scores = [n["score"] for n in full]
    for rank, got in enumerate(half):
        assert got["score"] == pytest.approx(scores[rank], abs=tolerance)
        gaps = [abs(scores[rank] - scores[j]) for j in (rank - 1, rank + 1) if 0 <= j < len(scores)]
        if min(gaps) > 2 * tolerance:
            assert got["id"] == full[rank]["id"], (rank, full, half)


def test_the_half_dir_is_half_the_bytes(server, half_server):
    full, half = server.service.artifacts, half_server.service.artifacts
    assert half.manifest.storage.profiles_std == "float16" and full.manifest.storage.profiles_std == "float32"
    for name in ("profiles_raw", "profiles_std", "features"):
        assert getattr(half, name).nbytes * 2 == getattr(full, name).nbytes


def test_routes_that_do_not_read_the_stored_arrays_are_identical(pair):
    for path in ("/api/health", "/api/info", "/api/samples?limit=100", "/api/samples?correct=false",
                 *(f"/api/samples/{i}" for i in SAMPLES),
                 *(f"/api/samples/{i}/image.png" for i in SAMPLES),
                 *(f"/api/samples/{i}/input-saliency.png?top_k=5" for i in SAMPLES[:2])):
        a, b = get_both(pair, path)
        assert a.content == b.content, path
    a, b = get_both(pair, "/api/experiments")  # the command names each dir
    assert a.json()["experiments"] == b.json()["experiments"]


def test_profiles_and_filters_within_rounding(pair, reference):
    for i in SAMPLES:
        raw32 = np.asarray(reference.artifacts.profiles_raw[i], dtype=np.float64)
        a, b = (r.json() for r in get_both(pair, f"/api/samples/{i}/profile"))
        z32, z16 = np.array(a["z"]), np.array(b["z"])
        assert np.all(np.abs(z16 - z32) <= U16 * np.abs(z32) + SUBNORMAL)
        assert a["layers"] == b["layers"]
        a, b = (r.json() for r in get_both(pair, f"/api/samples/{i}/filters", params={"top": 20}))
        z_sorted = np.sort(z32)[::-1]
        for rank, (want, got) in enumerate(zip(a, b)):
            assert got["z"] == pytest.approx(z32[got["filter"]], rel=U16, abs=SUBNORMAL)
            assert got["raw"] == pytest.approx(raw32[got["filter"]], rel=UBF16, abs=1e-38)
            gaps = [abs(z_sorted[rank] - z_sorted[j]) for j in (rank - 1, rank + 1) if j >= 0]
            if min(gaps) > 2 * (U16 * abs(z_sorted[rank]) + SUBNORMAL):
                assert got["filter"] == want["filter"] and got["layer"] == want["layer"]


def test_summary_within_rounding(pair, reference):
    a, b = (r.json() for r in get_both(pair, "/api/summary"))
    assert a["confusion"] == b["confusion"] and a["mean_raw"] == b["mean_raw"]
    z = np.asarray(reference.artifacts.profiles_std, dtype=np.float64)
    correct = reference.artifacts.correct
    for key, rows in (("mean_profile_correct", correct), ("mean_profile_misclassified", ~correct)):
        bound = U16 * np.abs(z[rows]).mean(axis=0) + SUBNORMAL + 1e-9
        assert np.all(np.abs(np.array(b[key]) - np.array(a[key])) <= bound)


@pytest.mark.parametrize("query", [{}, {"layers": "2:5"}, {"layers": "0:1"}, {"space": "feature"},
                                   {"misclassified_only": "true"}])
def test_neighbours_within_rounding_and_the_same_where_separated(pair, reference, query):
    a = reference.artifacts
    space = query.get("space", "saliency")
    matrix = a.features if space == "feature" else a.profiles_std
    for i in SAMPLES:
        row = np.asarray(matrix[i], dtype=np.float64)
        if "layers" in query:
            start, stop = (int(p) for p in query["layers"].split(":"))
            row = row[a.layout.spans[start].start : a.layout.spans[stop - 1].stop]
        tolerance = cosine_tolerance(len(row), float(np.linalg.norm(row)))
        full, half = pair
        want = full.get(f"/api/samples/{i}/neighbors", params={**query, "k": 9}).json()
        got = half.get(f"/api/samples/{i}/neighbors", params={**query, "k": 8}).json()
        assert_same_neighbours(want, got, tolerance)


def test_prune_within_rounding(pair, reference):
    z = np.asarray(reference.artifacts.profiles_std, dtype=np.float64)
    for i in SAMPLES[:3]:
        order = np.sort(z[i])[::-1]
        body = {"top_k": 5, "mode": "salient", "neighbors": 4}
        a, b = (r.json() for r in (pair[0].post(f"/api/samples/{i}/prune", json=body),
                                   pair[1].post(f"/api/samples/{i}/prune", json=body)))
        assert a["before"] == b["before"]
        if order[4] - order[5] > 2 * (U16 * abs(order[4]) + SUBNORMAL):  # the same 5 filters chosen
            assert a["after"]["pred"] == b["after"]["pred"]
            np.testing.assert_allclose(a["after"]["probs"], b["after"]["probs"], rtol=0, atol=1e-6)
        explicit = {"filters": [0, 3, 9], "neighbors": 0}
        a, b = (r.json() for r in (pair[0].post(f"/api/samples/{i}/prune", json=explicit),
                                   pair[1].post(f"/api/samples/{i}/prune", json=explicit)))
        assert a == b


def test_uploads_within_rounding(pair):
    png = images.encode(images.pattern(seed=3), "PNG")
    ids = []
    for client in pair:
        response = client.post("/api/uploads", files={"file": ("x.png", png, "image/png")}, data={"label": "2"})
        assert response.status_code == 200, response.text
        ids.append(response.json())
    assert ids[0]["pred"] == ids[1]["pred"] and ids[0]["probs"] == ids[1]["probs"]
    paths = [f"/api/uploads/{u['id']}" for u in ids]
    full, half = pair
    assert full.get(f"{paths[0]}/filters").json() == half.get(f"{paths[1]}/filters").json()  # computed, not stored
    for space in ("saliency", "feature"):
        profile = np.array(full.get(f"{paths[0]}/profile").json()["z"])
        want = full.get(f"{paths[0]}/neighbors", params={"k": 9, "space": space}).json()
        got = half.get(f"{paths[1]}/neighbors", params={"k": 8, "space": space}).json()
        # only the stored side is rounded: half the two-sided angle, bounded here by the two-sided one
        assert_same_neighbours(want, got, cosine_tolerance(len(profile), float(np.linalg.norm(profile))))
