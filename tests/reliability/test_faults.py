"""Faults with real processes: the backend killed and restarted, a graceful stop, artifacts of another model,
a full disk during precompute, and `kill -9` of precompute at random moments.

tests/precompute/test_resume_and_torchrun.py kills precompute at chosen log lines (mid-shards, right after a
resume, while assembling) and plants torn temp files; the random kills here cover the moments in between.
tests/backend/api/test_cli.py covers `pss serve` refusing other weights, a changed dataset and truncated files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from backend.store import Artifacts
from tests.backend.api import images
from tests.precompute.test_resume_and_torchrun import REPO, assert_same_artifacts, env, job_args, run_job
from tests.precompute.tiny import small_demo_checkpoint

from .conftest import serve, tiny_model

PROBES = [
    ("GET", "/api/info", None),
    ("GET", "/api/samples?correct=false&limit=10", None),
    ("GET", "/api/samples/5", None),
    ("GET", "/api/samples/5/filters?top=10", None),
    ("GET", "/api/samples/5/neighbors?k=5&layers=2:8", None),
    ("GET", "/api/samples/7/input-saliency.png?top_k=5", None),
    ("POST", "/api/samples/7/prune", {"top_k": 5, "mode": "salient"}),
]


def digest_dir(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def answers(served) -> list[tuple[int, bytes]]:
    with served.client() as http:
        return [(r.status_code, r.content) for r in
                (http.request(method, path, json=body) for method, path, body in PROBES)]


def precompute(args: list[str], preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "precompute", *args], cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=preexec)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The job failed with exit code 2 and exactly one `error:` line, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


# ----------------------------------------------------------------------------------------- backend
def test_backend_killed_restarts_from_the_same_artifacts_and_stops_gracefully(artifacts_dir, tmp_path):
    before = digest_dir(artifacts_dir)
    log = tmp_path / "serve.log"
    first = serve(artifacts_dir, log)
    expected = answers(first)
    assert all(status == 200 for status, _ in expected)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = serve(artifacts_dir, log, port=first.port)  # the same port: nothing of the dead server holds it
    assert answers(second) == expected

    # SIGTERM while an upload is still streaming in: that request is answered, then the process shuts down.
    data = images.encode(images.pattern(seed=11), "PNG")
    boundary = "pss-graceful"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data[: len(data) // 2]

    def body():
        yield head
        os.kill(second.process.pid, signal.SIGTERM)
        time.sleep(1.0)
        yield data[len(data) // 2 :] + f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(f"{second.url}/api/uploads", content=body(), timeout=60,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 200, response.text
    # uvicorn re-raises the SIGTERM once its shutdown is complete, so the exit status may say "terminated"
    assert second.process.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in second.log_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{second.url}/api/health", timeout=2)
    assert digest_dir(artifacts_dir) == before


# ----------------------------------------------------------------------------- another model's files
def test_artifacts_of_another_model_are_refused(artifacts_dir, tmp_path):
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, copy)
    before = digest_dir(copy)
    other = tmp_path / "other.pt"
    import torch

    torch.save(tiny_model(seed=7).state_dict(), other)

    # The compose case: PSS_MODEL changed, the volume still holds the old run's artifacts.
    line = one_line_error(precompute(["--model", f"checkpoint:{other}:demo", "--out", str(copy), "--limit", "64",
                                      "--device", "cpu", "--workers", "0"]))
    assert "another job" in line and "--force" in line
    assert digest_dir(copy) == before

    # Arrays of a model with another filter count dropped into the dir: refused before anything is served.
    num_filters = Artifacts.open(copy).layout.num_filters
    np.save(copy / "profiles_std.npy", np.zeros((64, num_filters + 8), np.float32))
    result = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--artifacts", str(copy), "--port", "0",
                             "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "error: " in result.stderr and "profiles_std.npy" in result.stderr


# ------------------------------------------------------------------------------------ full disk
@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return small_demo_checkpoint(tmp_path_factory.mktemp("model") / "demo.pt")


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int):
    """A tmpfs of ``size_mb`` at ``path``; yields False (nothing mounted) where mounting is not allowed."""
    path.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def fill_leaving(volume: Path, free_bytes: int) -> Path:
    stat = os.statvfs(volume)
    ballast = volume / "ballast"
    ballast.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - free_bytes))
    return ballast


def capped_file_size(limit: int):
    """For a subprocess: any file write beyond ``limit`` bytes fails with EFBIG (the signal is ignored)."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_full_disk_during_precompute_keeps_previous_artifacts(spec, artifacts_dir, tmp_path):
    """Previous artifacts on the same disk stay byte-identical and valid, the failed run says why in one line and
    leaves no manifest, and the same command completes once there is room. On a 4 MiB tmpfs when this process
    may mount one (the disk fills once mid-shards, once while the final files are written); otherwise every file
    write is capped with RLIMIT_FSIZE, which fails while the final arrays are written."""
    with small_disk(tmp_path / "volume", 4) as mounted:
        volume = tmp_path / "volume"
        previous, out = volume / "previous", volume / "new"
        shutil.copytree(artifacts_dir, previous)
        before = digest_dir(previous)
        args = job_args(spec, out)
        # the shards (~0.5 MB: profiles plus per-filter activation top-K) fit in 700 kB, the final files (~0.46 MB) do not
        attempts = [(100_000, False), (700_000, True)] if mounted else [(None, True)]
        for free, reached_assembly in attempts:
            ballast = fill_leaving(volume, free) if mounted else None
            result = precompute(args, preexec=None if mounted else capped_file_size(60_000))
            line = one_line_error(result)
            assert ("No space left on device" if mounted else "File too large") in line
            assert ("writing the artifacts" in result.stderr) == reached_assembly, result.stderr[-2000:]
            assert not (out / "manifest.json").exists()
            assert digest_dir(previous) == before
            Artifacts.open(previous)
            if ballast:
                ballast.unlink()
        run_job(spec, out)
        Artifacts.open(out)
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
        assert digest_dir(previous) == before


# ------------------------------------------------------------------------------- kill -9, anywhere
TRIGGER = "to compute on"  # the job's first log line once the model and data are loaded


def start_job(spec: str, out: Path) -> subprocess.Popen:
    """`python -m precompute`, returned once it has logged TRIGGER."""
    proc = subprocess.Popen([sys.executable, "-m", "precompute", *job_args(spec, out)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if TRIGGER in line:
            return proc
    raise AssertionError(f"precompute exited with {proc.wait()} before starting")


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    """An uninterrupted run, and how long it took from TRIGGER to its last log line (the manifest is written)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = start_job(spec, out)
    started = time.monotonic()
    duration = None
    for line in proc.stderr:
        if "precompute: done:" in line:
            duration = time.monotonic() - started
    assert proc.wait() == 0 and duration is not None
    return out, duration


def test_kill_9_at_random_moments_then_rerun_gives_identical_artifacts(spec, reference, tmp_path):
    """Each attempt is killed at a uniformly random moment of the uninterrupted job's run time (from TRIGGER to
    its manifest), resuming what the previous attempts left: kills land while shards are computed or written, while
    the final files are assembled, or around the manifest. Set PSS_FAULT_SEED to replay a run."""
    finished, duration = reference
    seed = int(os.environ.get("PSS_FAULT_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    out = tmp_path / "out"
    states = []
    for _ in range(3):
        if (out / "manifest.json").exists():
            break
        proc = start_job(spec, out)
        delay = rng.uniform(0.0, duration)
        time.sleep(delay)
        proc.kill()
        proc.wait(60)
        proc.stderr.close()
        shards = len(list((out / ".shards").glob("shard-*.npz"))) if (out / ".shards").exists() else 0
        states.append(f"killed after {delay:.2f} of {duration:.2f} s: {shards} shards, "
                      f"manifest {(out / 'manifest.json').exists()}")
    print(f"\nPSS_FAULT_SEED={seed}: " + "; ".join(states))
    run_job(spec, out)
    assert_same_artifacts(finished, out)
