"""A small thread-safe LRU cache whose entries also expire a fixed time after their last use."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_MISSING = object()


class TTLCache:
    """At most ``maxsize`` entries (``0`` keeps nothing); an entry unused for ``ttl`` seconds is gone."""

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        now = self._clock()
        with self._lock:
            entry = self._items.get(key, _MISSING)
            if entry is _MISSING:
                return default
            touched, value = entry
            if now - touched > self.ttl:
                del self._items[key]
                return default
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.maxsize <= 0:
            return
        now = self._clock()
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            self._expire(now)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._items:
            key, (touched, _) = next(iter(self._items.items()))
            if now - touched <= self.ttl:
                return
            del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._items)
