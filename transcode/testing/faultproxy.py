"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real S3 test server: the one the whole suite uses (through
tests/faultproxy.py) and the latency proxy of the benchmarks (tools/latency_proxy.py). It is scripted per request with
`Fault` rules (method, key pattern, query, part number, which occurrences) and can answer 503 SlowDown or 500, reset
the connection before or after the response headers, cut a body mid-stream, stall beyond the client's read timeout,
send a wrong Content-Length or an ETag that does not match the body; it records every request it sees (method, path,
headers). The older knobs (`fail`, every n-th request a SlowDown / reset / cut body, a delay) remain for the tests
written against them."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["BAD_ETAG", "CUT", "ERROR500", "KINDS", "LONG", "RESET", "RESET_AFTER", "RESET_BEFORE", "SHORT", "SLOWDOWN",
           "STALL", "Fault", "FaultyProxy"]

RESET = "reset"  # a `fail` answer: drop the connection without answering

# every kind of fault a rule can inject; the first four never reach the server, the others are applied to its answer
SLOWDOWN, ERROR500, RESET_BEFORE, STALL = "503 SlowDown", "500 InternalError", "reset before headers", "stall"
RESET_AFTER, CUT, LONG, SHORT, BAD_ETAG = ("reset after headers", "body cut mid-stream", "Content-Length too long",
                                           "Content-Length too short", "ETag not matching the body")
KINDS = (SLOWDOWN, ERROR500, RESET_BEFORE, STALL, RESET_AFTER, CUT, LONG, SHORT, BAD_ETAG)
_BEFORE = (SLOWDOWN, ERROR500, RESET_BEFORE, STALL)


@dataclass
class Fault:
    """One scripted fault: `kind` (one of KINDS) for the requests matching every given criterion: `method`,
    `key` (a regular expression searched in the URL-decoded path "/bucket/key"), `query` (one searched in the raw
    query string, e.g. "uploadId" for the parts and completion of a multipart upload), `part` (the partNumber),
    `min_length` (ranged requests of at least that many bytes: window reads, not header reads), and `nth` (which
    of the matching requests, counting from 1; None: every one, a persistent fault)."""

    kind: str
    method: str | None = None
    key: str | None = None
    query: str | None = None
    part: int | None = None
    min_length: int | None = None
    nth: Collection[int] | None = None
    matched: int = 0  # requests that met the criteria
    hits: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of each request the fault hit

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind

    def matches(self, method: str, path: str, query: str, byte_range: str | None = None) -> bool:
        """Whether a request meets the criteria (the occurrence aside)."""
        if self.min_length is not None:
            span = re.fullmatch(r"bytes=(\d+)-(\d+)", byte_range or "")
            if span is None or int(span[2]) - int(span[1]) + 1 < self.min_length:
                return False
        if self.method is not None and method != self.method:
            return False
        if self.key is not None and not re.search(self.key, path):
            return False
        if self.query is not None and not re.search(self.query, query):
            return False
        return self.part is None or parse_qs(query).get("partNumber") == [str(self.part)]


class FaultyProxy:
    """Forwards every request to `target`, except where a fault is due:

    - the first `Fault` in `faults` that matches a request and whose `nth` includes its occurrence decides;
      a STALL holds the request for `stall` seconds (beyond the client's read timeout) and drops the connection;
    - `fail(method, path)` returns (HTTP status, S3 error code) to answer with, RESET to drop the connection, or None
      to forward (path is the URL-decoded path, query string excluded: "/bucket/key" with path-style addressing);
    - every `slowdown_every`-th request gets 503 SlowDown, every `reset_every`-th a dropped connection, every
      `cut_every`-th GET with a body over 1000 bytes half its body (each GET at most once);
    - `delay` seconds are added before every request."""

    def __init__(self, target: str, slowdown_every: int = 0, reset_every: int = 0, cut_every: int = 0,
                 delay: float = 0.0, fail: Callable[[str, str], tuple[int, str] | str | None] | None = None,
                 faults: Collection[Fault] = (), stall: float = 3.0) -> None:
        self.slowdown_every, self.reset_every, self.cut_every = slowdown_every, reset_every, cut_every
        self.delay = delay
        self.fail = fail
        self.faults = list(faults)
        self.stall = stall
        self.count = 0
        self.injected: dict[str, int] = {"slowdown": 0, "reset": 0, "cut": 0}
        self.failed: Counter[tuple[str, str]] = Counter()  # (method, path) -> answers given by `fail`
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of every request
        self._cut: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()
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
                self.wfile.flush()
                self.connection.close()

            def _any(self) -> None:
                split = urlsplit(self.path)
                path = unquote(split.path)
                with proxy._lock:
                    proxy.count += 1
                    n = proxy.count
                    proxy.seen.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                if proxy.delay:
                    time.sleep(proxy.delay)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._due(self.command, path, split.query, self.headers.get("Range"))
                if fault in _BEFORE:
                    if fault == SLOWDOWN:
                        self._error(503, "SlowDown")
                    elif fault == ERROR500:
                        self._error(500, "InternalError")
                    else:
                        if fault == STALL:
                            time.sleep(proxy.stall)
                        self._drop()
                    return
                answer = proxy.fail(self.command, path) if proxy.fail is not None else None
                if answer is not None:
                    with proxy._lock:
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
                    if k.lower() == "etag" and fault == BAD_ETAG:
                        v = '"' + hashlib.md5(b"not the body" + data).hexdigest() + '"'
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                    self.end_headers()
                    return
                if fault == LONG:
                    self.send_header("Content-Length", str(len(data) + 100))
                elif fault == SHORT:
                    self.send_header("Content-Length", str(len(data) - max(1, len(data) // 4) if data else 0))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == RESET_AFTER:
                    self._drop()
                    return
                if fault == CUT:
                    self.wfile.write(data[: len(data) // 2])
                    self._drop()
                    return
                if fault == SHORT:  # the promised bytes, then a closed connection (the rest would poison the next)
                    self.wfile.write(data[: len(data) - max(1, len(data) // 4)] if data else b"")
                    self._drop()
                    return
                if fault == LONG:
                    self.wfile.write(data)
                    self._drop()
                    return
                if proxy.cut_every and self.command == "GET" and len(data) > 1000 and n % proxy.cut_every == 0 \
                        and proxy._first_cut(self.path, self.headers.get("Range")):
                    proxy.injected["cut"] += 1
                    self.wfile.write(data[: len(data) // 2])
                    self._drop()
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._t.start()

    def _due(self, method: str, path: str, query: str, byte_range: str | None) -> str | None:
        """The kind of the first rule that matches this request and is due on this occurrence, counted once."""
        with self._lock:
            due = None
            for f in self.faults:
                if f.matches(method, path, query, byte_range):
                    f.matched += 1
                    if due is None and (f.nth is None or f.matched in f.nth):
                        f.hits.append((method, path))
                        due = f.kind
            return due

    @property
    def hits(self) -> int:
        """Requests the `faults` rules hit."""
        return sum(len(f.hits) for f in self.faults)

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
