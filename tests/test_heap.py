"""A worker's threads share glibc's arenas once transcode.engine.heap has tuned the allocator (Linux, glibc)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import ctypes, os, sys, tempfile, threading
    from transcode.engine.heap import ARENAS, release_large_buffers
    if sys.argv[1] == "tuned":
        assert release_large_buffers() and release_large_buffers()  # once per process, idempotent
    go = threading.Barrier(8)

    def run():
        go.wait()  # all at once: each thread that finds the arenas busy would get its own
        for _ in range(20):
            b = bytearray(1 << 20)
            del b

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    fd, path = tempfile.mkstemp()
    os.close(fd)
    fp = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(open(path).read().count("<heap nr="), ARENAS)
''')


def _arenas(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True).stdout
    heaps, limit = out.split()
    return int(heaps), int(limit)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas exist on Linux only")
def test_threads_share_at_most_the_set_number_of_arenas():
    default, _ = _arenas("default")
    tuned, limit = _arenas("tuned")
    assert tuned <= limit < default, (tuned, limit, default)
