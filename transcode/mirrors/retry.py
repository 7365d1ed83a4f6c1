"""Retries with exponential backoff for what botocore does not retry itself (streamed bodies cut short, resets
after its own attempts), counted per mirror for the summary."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_TRANSIENT_TYPES = {
    "ConnectionError", "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "ProtocolError", "IncompleteRead", "ConnectionResetError",
    "RemoteDisconnected", "TimeoutError", "socket.timeout", "BrokenPipeError",
}
_TRANSIENT_CODES = {"SlowDown", "503", "500", "502", "504", "InternalError", "ServiceUnavailable", "RequestTimeout",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def transient_reason(exc: BaseException) -> str | None:
    """A short reason when `exc` (or what caused it) is worth retrying: throttling, resets, timeouts."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        name = type(e).__name__
        if name in _TRANSIENT_TYPES:
            return name
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code", ""))
            status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _TRANSIENT_CODES or status in (500, 502, 503, 504):
                return f"{status} {code}".strip()
        e = e.__cause__ or e.__context__
        seen += 1
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
                time.sleep(min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def by_mirror(self, mirror: str) -> dict[str, int]:
        """Retries of one mirror by reason."""
        with self._lock:
            return {r: n for (m, r), n in self.counts.items() if m == mirror}
