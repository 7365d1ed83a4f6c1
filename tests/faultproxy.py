"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real S3 test server (helper module, not tests): it
answers some requests with an S3 error of its choosing, drops connections, cuts GET bodies short, adds latency,
and records every request it sees (method, path, headers)."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Self
from urllib.parse import unquote, urlsplit

RESET = "reset"  # a `fail` answer: drop the connection without answering


class FaultyProxy:
    """Forwards every request to `target`, except where a fault is due:

    - `fail(method, path)` returns (HTTP status, S3 error code) to answer with, RESET to drop the connection, or None
      to forward (path is the URL-decoded path, query string excluded: "/bucket/key" with path-style addressing);
    - every `slowdown_every`-th request gets 503 SlowDown, every `reset_every`-th a dropped connection, every
      `cut_every`-th GET with a body over 1000 bytes half its body (each GET at most once);
    - `delay` seconds are added before every request."""

    def __init__(self, target: str, slowdown_every: int = 0, reset_every: int = 0, cut_every: int = 0,
                 delay: float = 0.0, fail: Callable[[str, str], tuple[int, str] | str | None] | None = None) -> None:
        self.slowdown_every, self.reset_every, self.cut_every = slowdown_every, reset_every, cut_every
        self.delay = delay
        self.fail = fail
        self.count = 0
        self.injected: dict[str, int] = {"slowdown": 0, "reset": 0, "cut": 0}
        self.failed: Counter[tuple[str, str]] = Counter()  # (method, path) -> answers given by `fail`
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of every request
        self._cut: set[tuple[str, str | None]] = set()
        lock = threading.Lock()
        host = urlsplit(target)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def _error(self, status: int, code: str) -> None:
                msg = f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(msg)

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.close()

            def _any(self) -> None:
                path = unquote(urlsplit(self.path).path)
                with lock:
                    proxy.count += 1
                    n = proxy.count
                    proxy.seen.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                if proxy.delay:
                    time.sleep(proxy.delay)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = proxy.fail(self.command, path) if proxy.fail is not None else None
                if answer is not None:
                    with lock:
                        proxy.failed[(self.command, path)] += 1
                    if answer == RESET:
                        self._drop()
                    else:
                        self._error(*answer)
                    return
                if proxy.reset_every and n % proxy.reset_every == 0:
                    proxy.injected["reset"] += 1
                    self._drop()
                    return
                if proxy.slowdown_every and n % proxy.slowdown_every == 0:
                    proxy.injected["slowdown"] += 1
                    self._error(503, "SlowDown")
                    return
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
                conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if proxy.cut_every and self.command == "GET" and len(data) > 1000 and n % proxy.cut_every == 0 \
                        and proxy._first_cut(self.path, self.headers.get("Range")):
                    proxy.injected["cut"] += 1
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._drop()
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._t.start()

    def _first_cut(self, path: str, byte_range: str | None) -> bool:
        """Cut a given GET at most once: with every fifth body cut and several readers, the retries of one
        read could otherwise all land on cut turns and exhaust any retry budget, making the test a lottery."""
        key = (path, byte_range)
        if key in self._cut:
            return False
        self._cut.add(key)
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
