"""glibc's allocator told to keep few arenas, so that a worker's resident memory follows what it holds. By default
glibc gives every thread that allocates its own arena (up to 8 per core): a worker fetching windows of several MiB
on 8 threads, encoding on others and uploading parts from more keeps the buffers freed in each arena resident for
that arena alone, well beyond its buffer budget."""

from __future__ import annotations

import ctypes
import sys

M_ARENA_MAX = -8  # mallopt parameter of glibc's malloc.h
ARENAS = 2  # threads share these: a buffer one thread frees is reused by the next that allocates

_tuned: bool | None = None


def release_large_buffers() -> bool:
    """Limit glibc to ARENAS arenas once per process (threads started later share them); False where the C library
    is not glibc or the platform not Linux, where nothing is changed."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if sys.platform.startswith("linux"):
            try:
                mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
            except (OSError, AttributeError):
                return False
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            _tuned = bool(mallopt(M_ARENA_MAX, ARENAS))
    return _tuned
