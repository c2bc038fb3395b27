"""Background jobs: long work (experiment runs, whole-dataset evaluations) that a request starts and polls.

Each job runs in its own thread and reports progress through its ``JobHandle``. At most one job of each kind
runs at a time (a second is refused with ``Busy``), so a user cannot queue up hours of work by clicking.
Jobs never hold the compute worker for long: experiment runs are a separate, lower-priority process, and
in-process jobs submit small chunks to the worker, so interactive requests interleave with them.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

KEPT_JOBS = 50  # finished jobs remembered (oldest forgotten first)


class Busy(Exception):
    """A job of this kind is already running."""

    def __init__(self, running: "Job"):
        super().__init__(f"a {running.kind} job is already running ({running.id}); wait for it or cancel it")
        self.running = running


class Cancelled(Exception):
    """Raised inside a job whose cancellation was requested."""


@dataclass
class Job:
    id: str
    kind: str
    title: str
    state: str = "running"  # running | done | failed | cancelled
    progress: float = 0.0
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                "progress": round(self.progress, 4), "message": self.message, "started": self.started,
                "finished": self.finished, "result": self.result, "error": self.error}


class JobHandle:
    """What a running job sees: report progress, and learn whether it should stop."""

    def __init__(self, job: Job):
        self._job = job

    def report(self, progress: float, message: str | None = None) -> None:
        self._job.progress = min(1.0, max(0.0, progress))
        if message is not None:
            self._job.message = message
        self.check()

    def check(self) -> None:
        if self._job.cancel_requested.is_set():
            raise Cancelled()

    @property
    def cancelled(self) -> threading.Event:
        return self._job.cancel_requested


class Jobs:
    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, title: str, work: Callable[[JobHandle], Any]) -> Job:
        """Starts ``work(handle)`` in a thread; its return value becomes the job's result."""
        with self._lock:
            running = next((j for j in self._jobs.values() if j.kind == kind and j.state == "running"), None)
            if running is not None:
                raise Busy(running)
            job = Job(id=secrets.token_hex(8), kind=kind, title=title)
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.state != "running"]
            for old in finished[: max(0, len(finished) - KEPT_JOBS)]:
                del self._jobs[old.id]
            thread = threading.Thread(target=self._run, args=(job, work), name=f"pss-job-{kind}", daemon=True)
            self._threads[job.id] = thread
        thread.start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def kinds(self) -> list[str]:
        return sorted({j.kind for j in self._jobs.values()})

    def latest(self, kind: str) -> Job | None:
        jobs = [j for j in self._jobs.values() if j.kind == kind]
        return max(jobs, key=lambda j: j.started) if jobs else None

    def cancel(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None and job.state == "running":
            job.cancel_requested.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self._jobs.get(job_id)

    def close(self, timeout: float = 10.0) -> None:
        """Cancels every running job and waits a little for them to stop."""
        for job in list(self._jobs.values()):
            self.cancel(job.id)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, job: Job, work: Callable[[JobHandle], Any]) -> None:
        try:
            job.result = work(JobHandle(job))
            job.state, job.progress = "done", 1.0
        except Cancelled:
            job.state = "cancelled"
        except Exception as exc:  # a job's failure is its state, read by the client; the server carries on
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.state, job.error = "failed", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        finally:
            job.finished = time.time()
            self._threads.pop(job.id, None)
