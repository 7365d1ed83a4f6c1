"""The process-wide tally of storage retries (botocore's own and the storage layer's) and of the transient failures
behind them, by reason: what the reports of every verb show as `retries` and `transient`."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

BACKOFF_BASE = 0.2  # seconds before the first retry of the storage layer's own loop, doubled per retry
BACKOFF_CAP = 5.0


@dataclass(frozen=True)
class RetryCount:
    """Retries made and transient failures met (by reason, e.g. "503 SlowDown", "ResponseStreamingError")."""

    retries: int = 0
    transient: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: RetryCount) -> RetryCount:
        reasons = Counter(self.transient)
        reasons.subtract(other.transient)
        return RetryCount(self.retries - other.retries, {r: n for r, n in sorted(reasons.items()) if n > 0})

    def __add__(self, other: RetryCount) -> RetryCount:
        reasons = Counter(self.transient) + Counter(other.transient)
        return RetryCount(self.retries + other.retries, dict(sorted(reasons.items())))

    def to_dict(self) -> dict:
        """{"retries": N, "transient": {reason: failures}} for a report."""
        return {"retries": self.retries, "transient": dict(self.transient)}

    @classmethod
    def from_dict(cls, d: dict | None) -> RetryCount:
        """The inverse of `to_dict` (a worker's result)."""
        d = d or {}
        return cls(int(d.get("retries", 0)), dict(d.get("transient") or {}))


class _Tally:
    """Requests sent and API calls made (botocore's retries are the difference), the storage layer's own retries,
    and transient failures by reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = self._calls = self._own = 0
        self._reasons: Counter[str] = Counter()

    def sent(self) -> None:
        with self._lock:
            self._sent += 1

    def called(self) -> None:
        with self._lock:
            self._calls += 1

    def retried(self) -> None:
        with self._lock:
            self._own += 1

    def failed(self, reason: str) -> None:
        with self._lock:
            self._reasons[reason] += 1

    def now(self) -> RetryCount:
        with self._lock:
            return RetryCount(self._sent - self._calls + self._own, dict(self._reasons))


TALLY = _Tally()


def retry_count() -> RetryCount:
    """Retries and transient failures of this process so far; a verb reports the difference over its run."""
    return TALLY.now()


def backoff(retry: int, base: float | None = None, cap: float | None = None) -> None:
    """Sleep before retry number `retry` (1, 2, ...): jittered exponential backoff from `base` seconds (default
    BACKOFF_BASE) up to `cap` (default BACKOFF_CAP)."""
    base = BACKOFF_BASE if base is None else base
    cap = BACKOFF_CAP if cap is None else cap
    time.sleep(min(cap, base * 2 ** (retry - 1)) * (0.5 + random.random()))
