"""Retries with exponential backoff for what botocore does not retry itself (streamed bodies cut short, resets
after its own attempts), counted per mirror for the summary. What is worth retrying is decided by the storage
error's type (TransientStorageError) alone."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from transcode.errors import TransientStorageError
from transcode.storage.retries import backoff

T = TypeVar("T")


def transient_reason(exc: BaseException) -> str | None:
    """A short reason (the storage error's cause: "503 SlowDown", "ResponseStreamingError", "EIO") when `exc` is a
    transient storage failure worth retrying, else None."""
    if isinstance(exc, TransientStorageError):
        return exc.cause or type(exc).__name__
    return None


class Retrier:
    """Calls a function again after a transient failure (up to `attempts` calls in all), sleeping with jittered
    exponential backoff; counts retries by mirror and reason."""

    def __init__(self, attempts: int = 4, base: float = 0.25, cap: float = 8.0) -> None:
        self.attempts = max(1, attempts)
        self.base = base
        self.cap = cap
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def note(self, mirror: str, reason: str) -> None:
        """Count one retry."""
        with self._lock:
            self.counts[(mirror, reason)] += 1

    def call(self, mirror: str, fn: Callable[[], T]) -> T:
        """fn(), retried on transient failures."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as e:
                reason = transient_reason(e)
                if reason is None or attempt == self.attempts:
                    raise
                self.note(mirror, reason)
                backoff(attempt, self.base, self.cap)
        raise AssertionError("unreachable")

    def by_mirror(self, mirror: str) -> dict[str, int]:
        """Retries of one mirror by reason."""
        with self._lock:
            return {r: n for (m, r), n in self.counts.items() if m == mirror}
