"""The one thread that owns the model.

Every piece of model work (forward passes, saliency, pruning) runs here, one job at a time, so concurrent
requests never interleave hooks or contend for GPU memory. The queue is bounded: when it is full, or a job
runs out of GPU memory, the caller gets ``Overloaded`` (answered 503 + Retry-After) and the worker carries on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The model cannot take this job now; try again shortly."""


class ComputeWorker:
    def __init__(self, max_queue: int, name: str = "pss-compute"):
        self._jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs ``fn(*args)`` on the worker thread and waits for it without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(outcome: Any, ok: bool) -> None:
            loop.call_soon_threadsafe(_settle, future, outcome, ok)

        self._submit(fn, args, settle, future.cancelled)
        return await future

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Blocking variant for code outside the event loop (start-up warm-up, tests)."""
        done = threading.Event()
        box: list = []

        def settle(outcome: Any, ok: bool) -> None:
            box.append((outcome, ok))
            done.set()

        self._submit(fn, args, settle, lambda: False)
        if not done.wait(timeout):
            raise TimeoutError("the compute worker did not answer in time")
        outcome, ok = box[0]
        if not ok:
            raise outcome
        return outcome

    @property
    def pending(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return self._jobs.qsize()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _submit(self, fn, args, settle, abandoned) -> None:
        try:
            self._jobs.put_nowait((fn, args, settle, abandoned))
        except queue.Full:
            raise Overloaded("the server is busy: too many computations are waiting; retry shortly")

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fn, args, settle, abandoned = item
            if abandoned():
                continue  # the client went away while the job waited
            try:
                outcome, ok = fn(*args), True
            except torch.cuda.OutOfMemoryError:
                log.warning("compute job ran out of GPU memory; answering 503")
                torch.cuda.empty_cache()
                outcome, ok = Overloaded("the GPU ran out of memory for this request; retry shortly"), False
            except Exception as exc:
                outcome, ok = exc, False
            settle(outcome, ok)


def _settle(future: asyncio.Future, outcome: Any, ok: bool) -> None:
    if future.done():
        return
    if ok:
        future.set_result(outcome)
    else:
        future.set_exception(outcome)
