"""Experiment runs started from the browser: ``pss experiments`` as a child process of the server.

A separate process keeps the server responsive (its own interpreter, one torch thread, a lower CPU priority)
and makes cancelling exact (the process group is ended). It writes the same DIR/experiments/*.json as the
command line, and reports progress as plain lines (``--progress-lines``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import backend
from backend.experiments import NAMES

from .jobs import JobHandle

NICENESS = 10
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_GRACE_S = 5.0


def command(artifacts: Path, names: list[str], quick: bool, device: str) -> list[str]:
    which = "all" if list(names) == list(NAMES) else ",".join(names)
    argv = [sys.executable, "-m", "backend.cli", "experiments", "--artifacts", str(artifacts), "--which", which,
            "--device", device, "--progress-lines"]
    return argv + (["--quick"] if quick else [])


def run_experiments(handle: JobHandle, artifacts: Path, names: list[str], quick: bool, device: str) -> dict:
    """Runs the child to the end (or until cancelled), updating the job's progress; the result names the
    experiments that ran and where their results are served."""
    env = dict(os.environ)
    root = str(Path(backend.__file__).resolve().parents[1])  # the child imports this same code
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child can never block on it
    process = subprocess.Popen(
        command(artifacts, names, quick, device), stdout=subprocess.PIPE, stderr=errors, text=True,
        env=env, start_new_session=True, preexec_fn=_lower_priority,
    )
    stop_when_cancelled = _Watch(handle, process)
    started: list[str] = []
    try:
        for line in process.stdout:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "start":
                started.append(parts[1])
                handle.report((len(started) - 1) / len(names), f"running {parts[1]}")
            elif len(parts) == 3 and parts[0] == "progress" and started and int(parts[2]) > 0:
                within = int(parts[1]) / int(parts[2])
                handle.report((len(started) - 1 + within) / len(names), f"running {started[-1]}")
        code = process.wait()
    finally:
        stop_when_cancelled.stop()
        errors.seek(0)
        messages = [line for line in errors.read().splitlines() if line.strip()]
        errors.close()
    handle.check()
    if code != 0:
        last = messages
        raise RuntimeError(last[-1] if last else f"pss experiments exited with status {code}")
    return {"experiments": list(started), "quick": quick,
            "results": [f"/api/experiments/{name}" for name in started]}


def _lower_priority() -> None:
    """In the child before exec: a lower CPU priority, and no run outlives its server."""
    os.nice(NICENESS)
    terminate_with_parent()


def terminate_with_parent() -> None:
    """For a child before exec (``preexec_fn``): on Linux, SIGTERM to it when its parent dies, also by SIGKILL,
    so that no server or run is left behind; elsewhere nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class _Watch:
    """Ends the child's process group once the job is cancelled (the reading loop then sees end of output)."""

    def __init__(self, handle: JobHandle, process: subprocess.Popen):
        self._process = process
        self._done = threading.Event()
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name="pss-job-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            if self._handle.cancelled.wait(0.2):
                _end(self._process)
                return

    def stop(self) -> None:
        self._done.set()
        if self._process.poll() is None:
            _end(self._process)


def _end(process: subprocess.Popen) -> None:
    """SIGTERM to the child's own process group, SIGKILL if it has not gone after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
