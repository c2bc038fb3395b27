"""`pss serve` refuses stale or foreign artifacts with one line (no traceback) before it listens.

One case runs the real command in a subprocess; the others call the same CLI entry point in-process
(``backend.cli.main``), which is what the console script runs, without paying for a Python start each."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from .conftest import free_port, serve_command, tiny_model


def refuse_in_subprocess(artifacts) -> str:
    result = subprocess.run(serve_command(artifacts, free_port()), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    return one_error_line(result.stderr)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def refuse(artifacts, capsys) -> str:
    from backend.cli import main

    capsys.readouterr()
    assert main(["serve", "--artifacts", str(artifacts), "--port", str(free_port()), "--device", "cpu"]) == 2
    return one_error_line(capsys.readouterr().err)


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
    line = refuse_in_subprocess(copy)
    assert "stale" in line and "weights" in line


def test_refuses_artifacts_of_a_changed_dataset(copy, capsys):
    edit_manifest(copy, lambda m: m["data"].update(fingerprint="0" * 64))
    line = refuse(copy, capsys)
    assert "stale" in line and "dataset" in line


def test_refuses_unfinished_or_missing_artifacts(copy, tmp_path, capsys):
    (copy / "manifest.json").unlink()
    assert "manifest.json is missing" in refuse(copy, capsys)
    assert "does not exist" in refuse(tmp_path / "nowhere", capsys)


def test_refuses_truncated_arrays(copy, capsys):
    path = copy / "profiles_std.npy"
    path.write_bytes(path.read_bytes()[:-100])
    assert "profiles_std.npy" in refuse(copy, capsys)
