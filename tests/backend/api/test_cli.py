"""`pss serve` refuses stale or foreign artifacts with one line (no traceback) before it listens."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from .conftest import free_port, serve_command, tiny_model


def refuse(artifacts) -> str:
    result = subprocess.run(serve_command(artifacts, free_port()), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture()
def copy(artifacts_dir, tmp_path):
    target = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, target)
    return target


def edit_manifest(directory, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_refuses_artifacts_of_other_weights(copy, tmp_path):
    retrained = tmp_path / "retrained.pt"
    torch.save(tiny_model(seed=99).state_dict(), retrained)  # same architecture, other weights
    edit_manifest(copy, lambda m: m["model"].update(spec=f"checkpoint:{retrained}:demo"))
    line = refuse(copy)
    assert "stale" in line and "weights" in line


def test_refuses_artifacts_of_a_changed_dataset(copy):
    edit_manifest(copy, lambda m: m["data"].update(fingerprint="0" * 64))
    line = refuse(copy)
    assert "stale" in line and "dataset" in line


def test_refuses_unfinished_or_missing_artifacts(copy, tmp_path):
    (copy / "manifest.json").unlink()
    assert "manifest.json is missing" in refuse(copy)
    assert "does not exist" in refuse(tmp_path / "nowhere")


def test_refuses_truncated_arrays(copy):
    path = copy / "profiles_std.npy"
    path.write_bytes(path.read_bytes()[:-100])
    assert "profiles_std.npy" in refuse(copy)
