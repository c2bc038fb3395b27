"""Bring your own model, end to end as a user runs it: the user's own module (``python:``) and a timm model over
an ``imagefolder:`` directory with a class-names file -> `pss precompute` (with preprocessing flags) -> a real
`pss serve` -> every backend route, an upload, live pruning, neighbours -> `pss experiments`. Subprocesses run
the real console entry point; the served preprocessing must be the one precompute recorded."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.saliency import FilterLayout
from tests.reliability.conftest import serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"0": ["cat", "Cat (Felis catus)"], "1": ["dog", "Dog"], "2": ["owl", "Barn owl"]}
PER_CLASS = 5

MODULE = """
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def build():
    torch.manual_seed(11)
    model = SmallNet()
    with torch.no_grad():  # varied predictions at random init
        model.head.weight.mul_(8.0)
    return model
"""
TIMM_SETUP = """
import sys, timm, torch
torch.manual_seed(0)
torch.save(timm.create_model(sys.argv[1], pretrained=False, num_classes=3).state_dict(), sys.argv[2])
"""


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def pss(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=cwd, env=env or _env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The user's directory: their module, a folder of photos (one sub-folder per class) and the class names."""
    root = tmp_path_factory.mktemp("own_model")
    (root / "smallnet.py").write_text(textwrap.dedent(MODULE))
    rng = np.random.default_rng(0)
    for index, (folder, _) in CLASSES.items():
        for i in range(PER_CLASS):
            path = root / "photos" / folder / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            tint = np.array([60, 120, 200]) * (int(index) + 1) % 256
            pixels = np.clip(rng.normal(tint, 60, (48 + 3 * i, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return root


def data_spec(root: Path) -> str:
    return f"imagefolder:{root / 'photos'}?classes={root / 'classes.json'}"


def check_routes(client, upload_file: Path, sample_id: int) -> None:
    """Every route a dashboard page uses, and an upload of a dataset image, which must give that sample's own
    prediction and profile (so uploads are preprocessed exactly as precompute was)."""
    info = client.get("/api/info").json()
    names = [name for _, name in CLASSES.values()]
    assert info["classes"] == names and info["num_samples"] == PER_CLASS * len(CLASSES)
    assert client.get("/api/summary").status_code == 200
    listing = client.get("/api/samples", params={"correct": "false", "limit": 5}).json()
    assert listing["total"] >= 1
    detail = client.get(f"/api/samples/{sample_id}").json()
    assert detail["label_name"] == names[detail["label"]] and detail["class_names"] == names
    for path in ("image.png", "input-saliency.png"):
        response = client.get(f"/api/samples/{sample_id}/{path}")
        assert response.status_code == 200 and response.content[:4] == b"\x89PNG"
    top = client.get(f"/api/samples/{sample_id}/filters", params={"top": 4}).json()
    assert len(top) == 4 and top[0]["layer"] == info["layers"][top[0]["layer_index"]]["name"]
    assert len(client.get(f"/api/samples/{sample_id}/profile").json()["z"]) == info["num_filters"]
    for space in ("saliency", "feature"):
        hits = client.get(f"/api/samples/{sample_id}/neighbors", params={"k": 3, "space": space}).json()
        assert len(hits) == 3 and sample_id not in [h["id"] for h in hits]
    pruned = client.post(f"/api/samples/{sample_id}/prune", json={"top_k": 3, "mode": "salient", "neighbors": 2})
    assert pruned.status_code == 200, pruned.text

    with open(upload_file, "rb") as handle:
        upload = client.post("/api/uploads", files={"file": ("photo.png", handle, "image/png")},
                             data={"label": str(detail["label"])})
    assert upload.status_code == 200, upload.text
    uid = upload.json()["id"]
    assert np.allclose(upload.json()["probs"], detail["probs"], atol=1e-5)
    sample_profile = np.asarray(client.get(f"/api/samples/{sample_id}/profile").json()["z"])
    upload_profile = np.asarray(client.get(f"/api/uploads/{uid}/profile").json()["z"])
    assert np.allclose(upload_profile, sample_profile, atol=1e-3 * np.abs(sample_profile).max())
    assert client.get(f"/api/uploads/{uid}/input-saliency.png").status_code == 200
    assert sample_id in [h["id"] for h in client.get(f"/api/uploads/{uid}/neighbors", params={"k": 1}).json()]
    assert client.post(f"/api/uploads/{uid}/prune", json={"top_k": 3, "mode": "salient"}).status_code == 200


def test_own_code_model_end_to_end(workspace, tmp_path):
    out = tmp_path / "artifacts"
    run = pss("precompute", "--model", "python:smallnet:build", "--data", data_spec(workspace), "--out", str(out),
              "--input-size", "40", "--resize", "44", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
              "--batch-size", "8", "--workers", "0", cwd=workspace)
    assert "ImageNet defaults" not in run.stdout  # the flags said everything
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"] == "conv"
    assert {k: manifest["preprocess"][k] for k in ("crop", "resize", "mean", "std", "source")} == {
        "crop": 40, "resize": 44, "mean": [0.5] * 3, "std": [0.25] * 3, "source": "flags"}
    assert manifest["class_names"] == [name for _, name in CLASSES.values()]

    # served from another directory: the user's module is then found through PYTHONPATH
    served = serve(out, tmp_path / "serve.log", env={"PYTHONPATH": f"{REPO}{os.pathsep}{workspace}"})
    try:
        with served.client() as client:
            check_routes(client, workspace / "photos" / "dog" / "2.png", sample_id=PER_CLASS + 2)
    finally:
        served.stop()

    pss("experiments", "--artifacts", str(out), "--limit", "2", "--no-progress", cwd=workspace)
    for name in ("pruning", "perturbation", "neighbors", "finetuning", "masking", "gradcam", "sanity"):
        assert json.loads((out / "experiments" / f"{name}.json").read_text())


def test_without_flags_the_model_gets_imagenet_defaults_announced_once(workspace, tmp_path):
    run = pss("precompute", "--model", "python:smallnet:build", "--data", data_spec(workspace), "--out",
              str(tmp_path / "a"), "--limit", "4", "--workers", "0", cwd=workspace)
    assert run.stdout.count("ImageNet defaults are used: RGB, resize 256, centre crop 224") == 1
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert (manifest["preprocess"]["source"], manifest["preprocess"]["crop"]) == ("imagenet-default", 224)


TIMM_CASES = [
    pytest.param("test_resnet", "conv", id="timm-cnn"),
    pytest.param("test_vit", "conv+linear", id="timm-vit-conv+linear", marks=pytest.mark.skipif(
        "params" not in inspect.signature(FilterLayout.from_model).parameters,
        reason="needs the engine's Linear-layer filters (FilterLayout.from_model(params=...))")),
]


@pytest.mark.parametrize(("name", "params"), TIMM_CASES)
def test_timm_model_end_to_end(workspace, tmp_path, name, params):
    pytest.importorskip("timm")
    weights = tmp_path / f"{name}.pt"
    subprocess.run([sys.executable, "-c", TIMM_SETUP, name, str(weights)], check=True, env=_env(), timeout=300)
    out = tmp_path / "artifacts"
    run = pss("precompute", "--model", f"timm:{name}:{weights}", "--data", data_spec(workspace), "--out", str(out),
              "--params", params, "--input-size", "64", "--batch-size", "8", "--workers", "0", cwd=workspace)
    assert "ImageNet defaults" not in run.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"] == params
    # the model's pretrained_cfg (timm's test models: mean 0.5, bicubic or bilinear) under the --input-size flag
    import timm

    cfg = timm.create_model(name, pretrained=False).pretrained_cfg
    assert manifest["preprocess"]["mean"] == list(cfg["mean"]) and manifest["preprocess"]["crop"] == 64
    assert manifest["preprocess"]["interpolation"] == cfg["interpolation"]
    if params == "conv+linear":
        assert any(layer["name"].endswith("qkv.weight") for layer in manifest["layout"]["layers"])

    served = serve(out, tmp_path / "serve.log")
    try:
        with served.client() as client:
            check_routes(client, workspace / "photos" / "owl" / "0.png", sample_id=2 * PER_CLASS)
    finally:
        served.stop()
