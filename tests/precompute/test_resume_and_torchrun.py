"""Crash safety and distribution, with real processes: `kill -9` and resume, and a 2-process torchrun (gloo).

All runs use the real `python -m precompute` entry point on real Fashion-MNIST images with a narrow random
demo ResNet, one thread per process (as torchrun gives each worker), so every run must produce the same bytes.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backend.store import Artifacts
from backend.store.analysis import ANALYSIS_FILES
from tests.precompute.tiny import small_demo_checkpoint

REPO = Path(__file__).resolve().parents[2]
SAMPLES, SHARD = 160, 16  # 10 shards


def job_args(spec: str, out: Path) -> list[str]:
    return ["--model", spec, "--data", "fashion-mnist:test", "--out", str(out), "--limit", str(SAMPLES),
            "--shard-size", str(SHARD), "--batch-size", "8", "--device", "cpu", "--workers", "0"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_job(spec: str, out: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "precompute", *job_args(spec, out)], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def run_and_kill(spec: str, out: Path, trigger: str, occurrence: int = 1) -> list[str]:
    """Starts the job and SIGKILLs it right after the ``occurrence``-th log line containing ``trigger``."""
    proc = subprocess.Popen([sys.executable, "-m", "precompute", *job_args(spec, out)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, seen = [], 0
    try:
        for line in proc.stderr:
            lines.append(line)
            if trigger in line:
                seen += 1
                if seen == occurrence:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=300)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    return lines


def assert_same_artifacts(a: Path, b: Path) -> None:
    """Every data file byte-for-byte equal; manifests equal except the creation time."""
    for name in ("profiles_raw.npy", "profiles_std.npy", "features.npy", "profile_norms.npy", "index.faiss",
                 "predictions.npz", "stats.npz", *ANALYSIS_FILES):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return small_demo_checkpoint(tmp_path_factory.mktemp("model") / "demo.pt")


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    run_job(spec, out)
    Artifacts.open(out)
    return out


def test_kill_9_at_several_points_then_resume_gives_identical_bytes(spec, reference, tmp_path):
    out = tmp_path / "out"
    run_and_kill(spec, out, "shard 1/10 written")
    assert not (out / "manifest.json").exists()
    done_after_first = len(list((out / ".shards").glob("shard-*.npz")))
    assert 1 <= done_after_first < 10

    lines = run_and_kill(spec, out, "written", occurrence=5)  # resumes, then dies again mid-way
    assert any(f"{done_after_first} already done" in line for line in lines), "".join(lines)
    assert not (out / "manifest.json").exists()
    assert len(list((out / ".shards").glob("shard-*.npz"))) > done_after_first

    run_and_kill(spec, out, "writing the artifacts")  # dies while assembling the final files
    assert not (out / "manifest.json").exists()
    run_job(spec, out)
    assert_same_artifacts(reference, out)
    assert not (out / ".shards").exists()


def test_half_written_files_are_never_taken_for_finished_ones(spec, reference, tmp_path):
    """A torn temp file (what a kill during a write leaves) is removed and its shard recomputed."""
    out = tmp_path / "out"
    run_and_kill(spec, out, "shard 3/10 written")
    shards = out / ".shards"
    victim = sorted(shards.glob("shard-*.npz"))[0]
    (shards / f".{victim.name}.tmp-999-dead").write_bytes(victim.read_bytes()[:1000])
    (out / ".profiles_std.npy.tmp-999-dead").write_bytes(b"\x93NUMPY partial")
    run_job(spec, out)
    assert_same_artifacts(reference, out)
    assert not list(out.glob(".*tmp-*"))


def test_torchrun_two_cpu_processes_equal_single_process(spec, reference, tmp_path):
    out = tmp_path / "out"
    # `python -m torch.distributed.run` is the `torchrun` script of this interpreter, on PATH or not.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "precompute", *job_args(spec, out)]
    done = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2" in done.stderr and "on 2 process(es)" in done.stderr
    assert_same_artifacts(reference, out)
