"""`pss experiments` end to end on tiny artifacts, and the API routes that serve its results."""

from __future__ import annotations

import json
import shutil

import pytest

from backend.cli import main
from backend.experiments import NAMES


@pytest.fixture(scope="module")
def run_dir(tiny_dir, tmp_path_factory):
    """A copy of the tiny artifacts where the CLI writes (so other tests' results do not mix in)."""
    out = tmp_path_factory.mktemp("cli") / "artifacts"
    shutil.copytree(tiny_dir, out, ignore=shutil.ignore_patterns("experiments"))
    return out


def test_cli_writes_every_result_with_its_command(run_dir, capsys):
    code = main(["experiments", "--artifacts", str(run_dir), "--limit", "3", "--threads", "1", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    files = sorted(p.name for p in (run_dir / "experiments").iterdir())
    assert files == sorted(f"{n}.json" for n in NAMES)  # no temp files left behind
    for name in NAMES:
        doc = json.loads((run_dir / "experiments" / f"{name}.json").read_text())
        assert doc["command"] == f"pss experiments --artifacts {run_dir} --limit 3"
        assert doc["num_samples"] == 3 and len(doc["sample_ids"]) == 3
        assert doc["artifacts"]["num_samples"] == 48
        assert name in out


def test_cli_which_and_errors(run_dir, capsys):
    assert main(["experiments", "--artifacts", str(run_dir), "--which", "bogus"]) == 2
    assert "unknown experiment 'bogus'" in capsys.readouterr().err
    assert main(["experiments", "--artifacts", str(run_dir / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    before = (run_dir / "experiments" / "pruning.json").read_bytes()
    assert main(["experiments", "--artifacts", str(run_dir), "--which", "neighbors", "--limit", "2",
                 "--no-progress"]) == 0
    assert (run_dir / "experiments" / "pruning.json").read_bytes() == before
    assert json.loads((run_dir / "experiments" / "neighbors.json").read_text())["num_samples"] == 2


def test_api_lists_and_serves_results(run_dir):
    from fastapi.testclient import TestClient

    from backend.api.main import create_app
    from backend.api.settings import Settings

    with TestClient(create_app(Settings(artifacts=run_dir, device="cpu"))) as client:
        listing = client.get("/api/experiments").json()
        assert [e["name"] for e in listing["experiments"]] == list(NAMES)
        assert all(e["available"] for e in listing["experiments"])
        doc = client.get("/api/experiments/pruning")
        assert doc.status_code == 200
        assert doc.json() == json.loads((run_dir / "experiments" / "pruning.json").read_text())
        assert client.get("/api/experiments/nope").status_code == 404
        for bad in ("..%2Fmanifest", "../manifest", "%2e%2e%2fmanifest.json"):
            assert client.get(f"/api/experiments/{bad}").status_code == 404
        (run_dir / "experiments" / "sanity.json").unlink()
        listing = {e["name"]: e for e in client.get("/api/experiments").json()["experiments"]}
        assert not listing["sanity"]["available"] and listing["pruning"]["available"]
        missing = client.get("/api/experiments/sanity")
        assert missing.status_code == 404 and "pss experiments" in missing.json()["detail"]


def test_cli_quick_with_progress_lines(run_dir, capsys, monkeypatch):
    from backend.experiments import cli

    monkeypatch.setattr(cli, "QUICK_LIMIT", 2)
    assert main(["experiments", "--artifacts", str(run_dir), "--which", "neighbors,masking", "--quick",
                 "--progress-lines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "start neighbors" in lines and "start masking" in lines
    assert lines.index("start neighbors") < lines.index("start masking")
    assert "progress 2 2" in lines
    doc = json.loads((run_dir / "experiments" / "masking.json").read_text())
    assert doc["num_samples"] == 2 and doc["command"].endswith("--which neighbors,masking --quick")


def test_quick_options_and_flags():
    from argparse import Namespace

    from backend.experiments import cli

    def args(**given):
        values = {"quick": True, "step_size": None, "noise_std": None, "mask_percent": None} | given
        return Namespace(**values)

    assert cli.options(args(), "finetuning") == {"ns": (1, 5, 25, 100)}
    assert cli.options(args(step_size=0.01), "finetuning") == {"ns": (1, 5, 25, 100), "step_size": 0.01}
    assert cli.options(args(quick=False), "finetuning") == {}
    assert cli.options(args(), "sanity") == {"max_samples": 16, "stats_samples": 128}
