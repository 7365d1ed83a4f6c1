"""Streaming k-way merge of sorted listings: memory bounded by a few pages per stream, whatever the object count."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from transcode.errors import StorageError

PAGE = 1000
_END = object()


class Prefetch:
    """Runs one sorted stream in a thread, handing over pages of items through a small bounded queue;
    transient failures restart the stream after the last key handed over (`restart(last_key)`)."""

    def __init__(self, name: str, start: Callable[[str | None], Iterable[Any]], key: Callable[[Any], str],
                 is_transient: Callable[[BaseException], bool] = lambda e: False, retries: int = 3,
                 pages: int = 4, on_retry: Callable[[str, BaseException], None] | None = None) -> None:
        self.name = name
        self._start = start
        self._key = key
        self._transient = is_transient
        self._retries = retries
        self._on_retry = on_retry
        self._q: queue.Queue = queue.Queue(maxsize=pages)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name=f"list-{name}", daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        last: str | None = None
        failures = 0
        while True:
            page: list = []
            try:
                for item in self._start(last):
                    page.append(item)
                    if len(page) >= PAGE:
                        if not self._put(page):
                            return
                        last = self._key(page[-1])
                        page = []
                        failures = 0
                if page and not self._put(page):
                    return
                self._put(_END)
                return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                if page:
                    if not self._put(page):
                        return
                    last = self._key(page[-1])
                if failures < self._retries and self._transient(e):
                    failures += 1
                    if self._on_retry:
                        self._on_retry(self.name, e)
                    time.sleep(min(10.0, 0.5 * 2 ** failures))
                    continue
                self._put(e)
                return

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def close(self) -> None:
        """Stop the producer thread (it exits at its next hand-over)."""
        self._stop.set()


def ordered(name: str, items: Iterable[Any], key: Callable[[Any], str]) -> Iterator[Any]:
    """Pass items through, failing loudly if keys are not strictly increasing: the merge depends on it."""
    prev: str | None = None
    for item in items:
        k = key(item)
        if prev is not None and k <= prev:
            raise StorageError(name, f"listing is not in UTF-8 binary key order ({prev!r} then {k!r})")
        prev = k
        yield item


def merge(streams: list[Iterable[Any]], key: Callable[[Any], str]) -> Iterator[tuple[str, list[Any]]]:
    """(key, [item or None per stream]) for every key in any stream, in key order; one pass, O(k) memory.

    Python compares str by code point, which is UTF-8 binary order for valid Unicode."""
    its = [iter(s) for s in streams]
    heads: list[Any] = [next(it, _END) for it in its]
    keys: list[str | None] = [None if h is _END else key(h) for h in heads]
    n = len(its)
    while True:
        live = [k for k in keys if k is not None]
        if not live:
            return
        k = min(live)
        row: list[Any] = [None] * n
        for i in range(n):
            if keys[i] == k:
                row[i] = heads[i]
                h = next(its[i], _END)
                heads[i] = h
                keys[i] = None if h is _END else key(h)
        yield k, row
