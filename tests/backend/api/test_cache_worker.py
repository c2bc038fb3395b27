"""The LRU+TTL cache and the single compute worker (overload and GPU out-of-memory become ``Overloaded``)."""

import asyncio
import threading

import pytest
import torch

from backend.api.cache import TTLCache
from backend.api.worker import ComputeWorker, Overloaded


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_cache_evicts_least_recently_used():
    cache = TTLCache(maxsize=2, ttl=100)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2


def test_cache_expires_after_ttl_since_last_use():
    clock = FakeClock()
    cache = TTLCache(maxsize=10, ttl=5, clock=clock)
    cache.put("a", 1)
    clock.now = 4
    assert cache.get("a") == 1  # touching renews it
    clock.now = 8
    assert cache.get("a") == 1
    clock.now = 13.5
    assert cache.get("a") is None
    assert len(cache) == 0


def test_cache_of_size_zero_keeps_nothing():
    cache = TTLCache(maxsize=0, ttl=5)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_worker_runs_jobs_on_one_thread_in_order():
    worker = ComputeWorker(max_queue=8)
    try:
        seen = []

        async def main():
            jobs = [worker.run(lambda i=i: seen.append((i, threading.current_thread().name)) or i) for i in range(5)]
            return await asyncio.gather(*jobs)

        assert asyncio.run(main()) == [0, 1, 2, 3, 4]
        assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
        assert {name for _, name in seen} == {"pss-compute"}
    finally:
        worker.stop()


def test_worker_full_queue_is_overloaded_then_recovers():
    worker = ComputeWorker(max_queue=1)
    release = threading.Event()
    started = threading.Event()
    try:
        def blocking():
            started.set()
            release.wait(10)
            return "slow"

        async def main():
            first = asyncio.ensure_future(worker.run(blocking))
            while not started.is_set():
                await asyncio.sleep(0.01)
            second = asyncio.ensure_future(worker.run(lambda: "queued"))  # fills the one queue slot
            await asyncio.sleep(0)
            with pytest.raises(Overloaded):
                await worker.run(lambda: "rejected")
            release.set()
            results = await asyncio.gather(first, second)
            return results, await worker.run(lambda: "after")

        assert asyncio.run(main()) == (["slow", "queued"], "after")
    finally:
        release.set()
        worker.stop()


def test_worker_turns_gpu_oom_into_overloaded_and_keeps_working():
    worker = ComputeWorker(max_queue=4)
    try:
        def out_of_memory():
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")

        async def main():
            with pytest.raises(Overloaded, match="out of memory"):
                await worker.run(out_of_memory)
            with pytest.raises(ValueError, match="plain"):
                await worker.run(lambda: (_ for _ in ()).throw(ValueError("plain error")))
            return await worker.run(lambda: 42)

        assert asyncio.run(main()) == 42
        assert worker.call(lambda: 7) == 7
    finally:
        worker.stop()
