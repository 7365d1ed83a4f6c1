"""The threads of one shard build: bands read ahead on an I/O thread (a remote source's windows fetched several at
a time), encoded on `threads` threads, and handed back in band order, with at most `slots` bands, each holding one
set of buffers, in flight. The caller appends what a band produced to its shard writers in that order, so the bytes
do not depend on the number of threads."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import numpy as np

Item = TypeVar("Item")
Slot = TypeVar("Slot")

REMOTE_FETCHES = 8  # ranged GETs in flight per shard build on a remote source
REMOTE_AHEAD_BYTES = 32 << 20  # a remote source's windows fetched ahead of the band being read, per shard build


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else every core)."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13+: affinity-aware
    if count is not None:
        return count() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(requested: int | None) -> int:
    """Encoding threads per shard build: `requested`, or by default every core this process may use, so that
    `--workers N` keeps the cores busy also when fewer than N shards are left (the last ones of every run)."""
    if requested is None or requested == 0:
        return available_cores()
    if requested < 0:
        raise ValueError(f"threads per worker must be at least 1, not {requested}")
    return requested


# "read" includes "read_waiting_for_source" (a remote source's fetches not yet back); "encode" and "write" do not
# include the waits named after them
STAGES = ("read", "read_waiting_for_source", "encode", "encode_waiting_for_read", "write",
          "write_waiting_for_encode")


class StageClock:
    """Seconds a shard build's threads spent in each stage, summed over the threads that ran it, and how long each
    stage waited for the one before it: whether a slow build was bound by its source, its encoding or its store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Add the block's wall time to `stage`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)


def _after(clock: StageClock, read: Future, work: Callable[[Any, Any, Any], Any], item: Any, slot: Any) -> Any:
    with clock.timing("encode_waiting_for_read"):
        what_read = read.result()
    with clock.timing("encode"):
        return work(item, slot, what_read)


def _timed(clock: StageClock, read: Callable[[Any, Any], Any], item: Any, slot: Any) -> Any:
    with clock.timing("read"):
        return read(item, slot)


class BandPipeline(Generic[Item, Slot]):
    """Runs `read(item, slot)` on one I/O thread, in item order, and `work(item, slot, what_read)` on `threads`
    threads as soon as its read is done; yields (item, result) in item order. An item holds its slot (made by
    `make_slot`, at most `slots` of them) until the caller asks for the next result: the result may point into it.
    Use as a context manager: leaving it cancels what has not started and waits for what has. `clock` sums the
    time spent reading, encoding and waiting; the caller adds its own (writing) to it."""

    def __init__(self, threads: int, slots: int, make_slot: Callable[[], Slot], fetchers: int = 0) -> None:
        if threads < 1 or slots < 1:
            raise ValueError(f"a band pipeline needs at least one thread and one slot ({threads}, {slots})")
        self.threads, self.slots, self.fetchers = threads, slots, fetchers
        self._make_slot = make_slot
        self._free: list[Slot] = []
        self._flight: deque[tuple[Item, Slot, Future, Future]] = deque()
        self._local = threading.local()
        self._io: ThreadPoolExecutor | None = None
        self._cpu: ThreadPoolExecutor | None = None
        self._fetch: ThreadPoolExecutor | None = None
        self.clock = StageClock()

    def __enter__(self) -> BandPipeline[Item, Slot]:
        self._io = ThreadPoolExecutor(1, thread_name_prefix="band-read")
        self._cpu = ThreadPoolExecutor(self.threads, thread_name_prefix="band-encode")
        if self.fetchers:
            self._fetch = ThreadPoolExecutor(self.fetchers, thread_name_prefix="band-fetch")
        return self

    def __exit__(self, *exc: object) -> None:
        for _, _, read, done in self._flight:
            done.cancel()
            read.cancel()
        self._flight.clear()
        for pool in (self._io, self._fetch, self._cpu):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._free.clear()

    def fetch_all(self, calls: Iterable[Callable[[], Any]]) -> list[Any]:
        """Each call's result, in order: run on the fetch threads at once where there are any, else one by one."""
        if self._fetch is None:
            return [c() for c in calls]
        futures = [self._fetch.submit(c) for c in calls]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def read_ahead(self, items: list[Item], calls: Callable[[Item], list[Callable[[], Any]]],
                   nbytes: Callable[[Item], int], budget: int = REMOTE_AHEAD_BYTES) -> ReadAhead[Item]:
        """Fetch `calls(item)` of the items in order on the fetch threads, ahead of the one being read, while what
        is fetched or in flight beyond it stays within `budget` bytes (at least the next item's calls are out)."""
        if self._fetch is None:
            raise RuntimeError("read-ahead needs a pipeline with fetch threads")
        return ReadAhead(self._fetch, items, calls, nbytes, budget, self.clock)

    def scratch(self, name: str, nbytes: int, dtype: np.dtype | type = np.uint8) -> np.ndarray:
        """A flat buffer of the calling thread's own, kept for the pipeline's life (reallocated only to grow)."""
        bufs = self._local.__dict__.setdefault("bufs", {})
        buf = bufs.get(name)
        if buf is None or buf.nbytes < nbytes:
            buf = bufs[name] = np.empty(nbytes, np.uint8)
        return buf[:nbytes].view(dtype)

    def run(self, items: Iterable[Item], read: Callable[[Item, Slot], Any],
            work: Callable[[Item, Slot, Any], Any]) -> Iterator[tuple[Item, Any]]:
        """Every item read and worked on, results handed back in item order."""
        if self._io is None or self._cpu is None:
            raise RuntimeError("BandPipeline.run outside its `with` block")
        for item in items:
            if len(self._flight) >= self.slots:
                yield from self._hand_back()
            slot = self._free.pop() if self._free else self._make_slot()
            r = self._io.submit(_timed, self.clock, read, item, slot)
            self._flight.append((item, slot, r, self._cpu.submit(_after, self.clock, r, work, item, slot)))
        while self._flight:
            yield from self._hand_back()

    def _hand_back(self) -> Iterator[tuple[Item, Any]]:
        """The oldest item's result; its slot is free again once the caller asks for more."""
        item, slot, _, done = self._flight[0]
        with self.clock.timing("write_waiting_for_encode"):
            result = done.result()
        self._flight.popleft()
        yield item, result
        self._free.append(slot)


class ReadAhead(Generic[Item]):
    """The results of each item's calls, taken in item order; later items' calls already running on a pool, as
    many as a byte budget allows: a remote source's latency hidden behind the bands before them."""

    def __init__(self, pool: ThreadPoolExecutor, items: list[Item], calls: Callable[[Item], list[Callable[[], Any]]],
                 nbytes: Callable[[Item], int], budget: int, clock: StageClock) -> None:
        self._pool, self._items, self._calls, self._nbytes, self._budget = pool, items, calls, nbytes, budget
        self._clock = clock
        self._queue: deque[tuple[Item, list[Future], int]] = deque()
        self._next = 0
        self.held = 0  # bytes fetched or in flight, beyond those handed out
        self.most_held = 0

    def _fill(self) -> None:
        while self._next < len(self._items):
            item = self._items[self._next]
            size = self._nbytes(item)
            if self._queue and self.held + size > self._budget:
                return
            self._queue.append((item, [self._pool.submit(c) for c in self._calls(item)], size))
            self._next += 1
            self.held += size
            self.most_held = max(self.most_held, self.held)

    def take(self, item: Item) -> list[Any]:
        """The item's results (it must be the next one in order); the next items' fetches started."""
        self._fill()
        if not self._queue or self._queue[0][0] is not item:
            raise RuntimeError("read-ahead items must be taken in their order")
        _, futures, size = self._queue.popleft()
        try:
            with self._clock.timing("read_waiting_for_source"):
                return [f.result() for f in futures]
        finally:
            self.held -= size
            self._fill()

    def close(self) -> None:
        """Cancel what has not started (what runs finishes on its own)."""
        for _, futures, _ in self._queue:
            for f in futures:
                f.cancel()
        self._queue.clear()
        self._next = len(self._items)
