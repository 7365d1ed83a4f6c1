"""FileWriter (staged, write-behind, O_DIRECT where possible) and WriteBehind: bytes, digests, atomicity, errors."""

import hashlib
import os
import random
import threading

import crc32c
import pytest

from transcode.errors import StorageError
from transcode.storage import LocalStorage, filewriter
from transcode.storage.writebehind import WriteBehind

STAGE = filewriter.STAGE_BYTES


def _pieces(total: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    out, left = [], total
    while left:
        n = min(left, rnd.choice([1, 7, 4096, 100_000, STAGE - 3, STAGE + 5]))
        out.append(rnd.randbytes(n))
        left -= n
    return out


@pytest.mark.parametrize("total", [0, 1, 4095, 4096, 4097, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 12345])
def test_bytes_size_md5_crc_and_no_leftovers(tmp_path, total):
    pieces = _pieces(total, total)
    data = b"".join(pieces)
    s = LocalStorage(tmp_path)
    with s.open_writer("a/b/obj") as w:
        for p in pieces:
            w.write(p)
        assert not (tmp_path / "a/b/obj").exists()  # nothing under the key before commit
    assert (tmp_path / "a/b/obj").read_bytes() == data
    assert (w.size, w.md5.hexdigest(), w.crc) == (len(data), hashlib.md5(data).hexdigest(), crc32c.crc32c(data))
    assert w.etag is None
    assert os.listdir(tmp_path / "a/b") == ["obj"]


def test_commit_replaces_an_existing_object_whole(tmp_path):
    s = LocalStorage(tmp_path)
    s.put("k", b"old" * 10_000)
    with s.open_writer("k") as w:
        w.write(b"new")
    assert s.read("k") == b"new"


def test_buffered_writes_when_direct_io_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_TRANSCODE_DIRECT_IO", "0")
    w = LocalStorage(tmp_path).open_writer("k")
    assert not w.direct
    w.write(b"x" * (STAGE + 10))
    w.commit()
    assert (tmp_path / "k").read_bytes() == b"x" * (STAGE + 10)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
def test_tmpfs_is_written_whatever_it_says_to_o_direct(tmp_path_factory):
    d = tmp_path_factory.mktemp("x", numbered=True)  # a unique name under /dev/shm
    root = os.path.join("/dev/shm", f"tessera-test-{os.getpid()}-{d.name}")
    try:
        data = random.Random(1).randbytes(STAGE + 4097)
        with LocalStorage(root).open_writer("k") as w:
            w.write(data)
        with open(os.path.join(root, "k"), "rb") as f:
            assert f.read() == data
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_a_failed_write_raises_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    real = os.pwrite

    def disk_full(fd, data, offset):
        if offset >= STAGE:
            raise OSError(28, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(filewriter.os, "pwrite", disk_full)
    w = LocalStorage(tmp_path).open_writer("d/shard")
    with pytest.raises(StorageError, match=r"d/shard.*No space left on device"):
        for _ in range(5):  # the error surfaces while writing or at the latest on commit
            w.write(b"z" * STAGE)
        w.commit()
    w.abort()
    assert os.listdir(tmp_path / "d") == []


def test_abort_discards(tmp_path):
    w = LocalStorage(tmp_path).open_writer("k")
    w.write(b"a" * (2 * STAGE + 1))
    w.abort()
    assert os.listdir(tmp_path) == []


def test_write_behind_keeps_order_and_reports_the_first_error():
    seen, gate = [], threading.Event()
    wb = WriteBehind("t", depth=1)
    wb.submit(lambda: (gate.wait(5), seen.append(0)))
    wb.submit(seen.append, 1)
    gate.set()
    wb.drain()
    assert seen == [0, 1]

    def boom():
        raise ValueError("part 3 failed")

    wb.submit(boom)
    wb.submit(seen.append, 4)  # may be queued before the error is known: it is dropped, never run
    with pytest.raises(ValueError, match="part 3 failed"):
        wb.drain()
    with pytest.raises(ValueError, match="part 3 failed"):
        wb.submit(seen.append, 5)
    wb.close()
    assert seen == [0, 1]
