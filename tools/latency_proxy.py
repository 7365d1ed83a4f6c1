"""A loopback TCP relay that delays every byte a client sends by a fixed time before it reaches an S3 endpoint (e.g.
the Ceph RADOS Gateway of tools/ceph_rgw_up.sh), so that benchmarks meet the per-request latency of a real network.

    python tools/latency_proxy.py --target http://127.0.0.1:7480 --delay-ms 20

prints `PROXY=http://127.0.0.1:PORT` and serves until interrupted (Ctrl-C, SIGTERM). It listens on 127.0.0.1 only.

It behaves like a network link with a one-way delay (as `tc netem` would add), not like an HTTP proxy: bytes stream
through as they come, each client-to-server chunk leaves `delay` after it arrived, and the answers come back at once.
So every request waits `delay` more before the server sees it, a connection's set-up costs `delay` too, and a large
body costs no extra transfer time (a store-and-forward proxy would read and resend it whole)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from types import TracebackType
from urllib.parse import urlsplit

CHUNK = 1 << 20


class LatencyProxy:
    """The relay, served from its own thread's event loop on 127.0.0.1; `url` to connect to, `close()` when done."""

    def __init__(self, target: str, delay: float) -> None:
        if delay < 0:
            raise ValueError(f"a delay cannot be negative ({delay * 1000:g} ms)")
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the target must be an http:// endpoint, not {target!r}")
        self.target = (parts.hostname, parts.port or 80)
        self.delay = delay
        self.connections = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve_forever, args=(started,), daemon=True)
        self._thread.start()
        started.wait()
        if self._server is None:
            raise RuntimeError("the latency proxy could not listen on 127.0.0.1")
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _serve_forever(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        finally:
            started.set()
        self._loop.run_forever()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await asyncio.sleep(self.delay)  # the connection's set-up: one more trip across the link
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._delayed(client_r, server_w), self._straight(server_r, client_w))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()

    async def _delayed(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Client to server: each chunk goes out `delay` after it came in, in order (the clock of its arrival)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            try:
                while data := await r.read(CHUNK):
                    queue.put_nowait((loop.time() + self.delay, data))
            finally:
                queue.put_nowait((0.0, b""))

        receiving = asyncio.create_task(receive())
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                self.bytes_up += len(data)
                w.write(data)
                await w.drain()
            if w.can_write_eof():
                w.write_eof()
        finally:
            receiving.cancel()

    async def _straight(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Server to client: as it comes."""
        while data := await r.read(CHUNK):
            self.bytes_down += len(data)
            w.write(data)
            await w.drain()
        w.close()

    def close(self) -> None:
        """Stop listening, drop open connections and end the thread."""
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "LatencyProxy":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def latency_proxy(target: str, delay_ms: float) -> LatencyProxy:
    """A relay on 127.0.0.1 to `target` delaying what clients send by `delay_ms` milliseconds (close it when done)."""
    return LatencyProxy(target, delay_ms / 1000.0)


def main(argv: list[str] | None = None) -> int:
    """Run the proxy until interrupted."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="the S3 endpoint to forward to, e.g. http://127.0.0.1:7480")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="milliseconds added per request (default: 20)")
    args = ap.parse_args(argv)
    proxy = latency_proxy(args.target, args.delay_ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"PROXY={proxy.url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
