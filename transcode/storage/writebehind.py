"""One background thread per object writer: blocks are hashed and written (or uploaded) in order while the
caller goes on encoding the next ones."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class WriteBehind:
    """Run `fn(*args)` calls on one thread, in submission order, at most `depth` waiting; the first error is
    raised in the caller at its next `submit`, `drain` or `check`, and every later call is dropped."""

    def __init__(self, name: str, depth: int = 1) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                fn, args = item
                if self._error is None:
                    try:
                        fn(*args)
                    except BaseException as e:  # handed to the caller, who decides
                        self._error = e
            finally:
                self._q.task_done()

    def check(self) -> None:
        """Raise the background error, if any."""
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Queue one call (blocks while `depth` calls are already waiting)."""
        self.check()
        self._q.put((fn, args))

    def drain(self) -> None:
        """Wait until every queued call has run; raise the first error."""
        self._q.join()
        self.check()

    def close(self) -> None:
        """Finish the queued calls and stop the thread (errors are left for `check`)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
