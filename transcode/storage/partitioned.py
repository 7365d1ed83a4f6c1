"""A sorted S3 listing fetched in parallel: the key space is cut into ranges at common prefixes (a few delimiter
listings), the ranges are listed concurrently and handed over strictly in key order through small bounded queues,
so memory stays flat (threads x pages) however many objects there are."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

from transcode.storage.base import ObjectInfo
from transcode.storage.s3 import S3Storage

PAGE = 1000
LEVEL_LIMIT = 5000  # a level with more entries than this is not split (the split itself must stay cheap)
_END = object()


@dataclass(frozen=True)
class KeyRange:
    """Keys under `prefix` ('' or ending in '/') with lo <= key < hi (None: unbounded)."""

    prefix: str
    lo: str | None = None
    hi: str | None = None

    @property
    def whole(self) -> bool:
        return self.lo is None and self.hi is None

    def before(self, after: str | None) -> bool:
        """True when every key of the range sorts at or before `after`."""
        if after is None:
            return False
        if self.hi is not None and self.hi <= after:
            return True
        return self.prefix < after and not after.startswith(self.prefix)


class PartitionedListing:
    """Every object of an S3 storage after `after`, in UTF-8 binary key order, listed by `threads` in parallel."""

    def __init__(self, storage: S3Storage, after: str | None = None, threads: int = 8, parts: int | None = None,
                 max_depth: int = 8, is_transient: Callable[[BaseException], bool] = lambda e: False,
                 retries: int = 3, on_retry: Callable[[BaseException], None] | None = None, pages: int = 1) -> None:
        self.s = storage
        self.after = after
        self.threads = max(1, threads)
        self.target = parts or self.threads
        self.max_depth = max_depth
        self.transient = is_transient
        self.retries = retries
        self.on_retry = on_retry
        self.pages = pages
        self.stop = threading.Event()
        self.split_requests = 0
        self.ranges = 0

    # ------------------------------------------------------------------ splitting

    def _split(self, pool: ThreadPoolExecutor) -> list[ObjectInfo | KeyRange]:
        """Objects and key ranges in key order: about `target` ranges where the key space allows."""
        items: list[ObjectInfo | KeyRange] = [KeyRange("")]
        leaves: set[str] = set()  # prefixes too wide to split cheaply
        for _ in range(self.max_depth):
            ranges = [it for it in items if isinstance(it, KeyRange)]
            open_ = [r for r in ranges if r.whole and r.prefix not in leaves]
            if not open_ or len(ranges) >= self.target:
                break
            budget = self.target - (len(ranges) - len(open_))
            share = max(1, budget // len(open_))
            levels = dict(zip([r.prefix for r in open_], pool.map(
                lambda r: self._retry(lambda: self.s.list_level(r.prefix, LEVEL_LIMIT)), open_)))
            self.split_requests += len(open_)
            out: list[ObjectInfo | KeyRange] = []
            for it in items:
                if not (isinstance(it, KeyRange) and it.prefix in levels and it.whole):
                    out.append(it)
                    continue
                objs, subs, complete = levels[it.prefix]
                if not complete or not subs:
                    leaves.add(it.prefix)
                    out.append(it)
                elif len(subs) <= share:
                    merged: list[tuple[str, ObjectInfo | KeyRange]] = [(o.key, o) for o in objs]
                    merged += [(p, KeyRange(p)) for p in subs]
                    merged.sort(key=lambda t: t[0])
                    out += [m for _, m in merged]
                else:  # many sub-prefixes: cut them into contiguous ranges (objects of this level included), but
                    # only into ranges of ten pages or more: a range's last page reads past its end
                    middle = subs[len(subs) // 2][:-1]
                    k = self._retry(lambda m=middle: sum(1 for _ in islice(self.s.list(m), PAGE)))
                    self.split_requests += 1
                    if k < PAGE:  # the sampled sub-prefix is small: estimate the whole level from it
                        share = min(share, max(1, (len(subs) * k) // (10 * PAGE)))
                    if share == 1:
                        leaves.add(it.prefix)
                        out.append(it)
                        continue
                    bounds = [subs[(j * len(subs)) // share] for j in range(1, share)]
                    edges = [None, *bounds, None]
                    out += [KeyRange(it.prefix, edges[j], edges[j + 1]) for j in range(share)]
            items = out
        return [it for it in items if not (isinstance(it, KeyRange) and it.before(self.after))
                and not (isinstance(it, ObjectInfo) and self.after is not None and it.key <= self.after)]

    def _retry(self, fn):
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as e:
                if attempt == self.retries or not self.transient(e):
                    raise
                if self.on_retry:
                    self.on_retry(e)
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ listing the ranges

    def _objects(self, r: KeyRange, start: str | None) -> Iterator[ObjectInfo]:
        it = self.s.list(r.prefix[:-1], start_after=start) if r.prefix else \
            (self.s.list_after(start) if start else self.s.list())
        for obj in it:
            if r.hi is not None and obj.key >= r.hi:
                return
            yield obj

    def _fill(self, r: KeyRange, q: queue.Queue) -> None:
        last = r.lo
        if self.after is not None and (last is None or self.after > last) and self.after.startswith(r.prefix):
            last = self.after
        failures = 0
        while True:
            page: list[ObjectInfo] = []
            try:
                for obj in self._objects(r, last):
                    page.append(obj)
                    if len(page) >= PAGE:
                        if not self._put(q, page):
                            return
                        last, page, failures = page[-1].key, [], 0
                if page and not self._put(q, page):
                    return
                self._put(q, _END)
                return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                if page:
                    if not self._put(q, page):
                        return
                    last = page[-1].key
                if failures < self.retries and self.transient(e):
                    failures += 1
                    if self.on_retry:
                        self.on_retry(e)
                    time.sleep(min(8.0, 0.5 * 2 ** failures))
                    continue
                self._put(q, e)
                return

    def _put(self, q: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[ObjectInfo]:
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="list")
        try:
            items = self._split(pool)
            ranges = [it for it in items if isinstance(it, KeyRange)]
            self.ranges = len(ranges)
            queues: list[queue.Queue] = []

            def start_upto(n: int) -> None:
                while len(queues) < min(n, len(ranges)):
                    q: queue.Queue = queue.Queue(maxsize=self.pages)
                    pool.submit(self._fill, ranges[len(queues)], q)
                    queues.append(q)

            done = 0
            for it in items:
                if isinstance(it, ObjectInfo):
                    yield it
                    continue
                start_upto(done + self.threads)  # the current range and the next ones, in order
                q = queues[done]
                while True:
                    got = q.get()
                    if got is _END:
                        break
                    if isinstance(got, BaseException):
                        raise got
                    yield from got
                queues[done] = None  # type: ignore[call-overload]  # let its pages go
                done += 1
        finally:
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the listing threads at their next hand-over."""
        self.stop.set()
