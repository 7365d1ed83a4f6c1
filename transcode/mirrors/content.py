"""Content evidence: stream each copy as parallel ranged reads, hash in order (MD5 and CRC32C), compare."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import crc32c

from transcode.mirrors.evidence import KeyCase, Policy
from transcode.mirrors.zarrcheck import representatives

BLOCK = 4 * 1024 * 1024
WINDOW = 4


class Cancelled(Exception):
    """The run is stopping; in-flight work gives up."""


def digest(read: Callable[[int, int], bytes], size: int, pool: Executor, stop: threading.Event,
           block: int = BLOCK, window: int = WINDOW, progress: Callable[[int], None] | None = None) -> tuple[str, str, int]:
    """(md5 hex, crc32c hex, bytes read) of an object read as `window` ranged reads in flight, hashed in order."""
    md5, crc, total = hashlib.md5(), 0, 0
    offsets = iter(range(0, max(size, 1), block))
    inflight: deque = deque()

    def submit() -> bool:
        off = next(offsets, None)
        if off is None:
            return False
        inflight.append(pool.submit(read, off, min(block, size - off)) if size else None)
        return True

    for _ in range(window):
        if not submit():
            break
    try:
        while inflight:
            if stop.is_set():
                raise Cancelled()
            fut = inflight.popleft()
            data = fut.result() if fut is not None else b""
            md5.update(data)
            crc = crc32c.crc32c(data, crc)
            total += len(data)
            if progress:
                progress(len(data))
            submit()
    finally:
        for f in inflight:
            if f is not None:
                f.cancel()
    return md5.hexdigest(), f"{crc:08x}", total


def content_evidence(case: KeyCase, pol: Policy, size: int, every_copy: bool,
                     hash_copy: Callable[[int], tuple[str, str, int]]) -> None:
    """Hash copies and add content proofs: every right-sized copy (replacing cheaper proofs), or one per class."""
    if every_copy:
        targets = [i for i in case.present if case.copies[i].size == size]
        case.reset()
        case.hashed = True
    else:
        targets = representatives(case, size)
    sums = {i: hash_copy(i) for i in targets}
    names = pol.names
    for x, i in enumerate(targets):
        for j in targets[x + 1:]:
            (mi, ci, ni), (mj, cj, nj) = sums[i], sums[j]
            if (mi, ci, ni) == (mj, cj, nj):
                case.equal(i, j)
            else:
                case.differ(i, j, "content", f"MD5 {mi} on {names[i]} != {mj} on {names[j]}"
                            + ("" if ni == nj else f" ({ni} vs {nj} bytes read)"))
    r = case.record if pol.uses_manifest(case.key) else None
    if r is None:
        return
    for i in targets:
        m, c, n = sums[i]
        if m == r.md5 and c == r.crc32c and n == r.size:
            case.equal(i, case.n)
        else:
            case.differ(i, case.n, "content", f"MD5 {m} (CRC32C {c}) != {r.md5} ({r.crc32c}) in the store manifest")
