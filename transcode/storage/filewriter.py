"""Atomic streaming file writer: a temporary file beside the target, written from a background thread through
two aligned staging buffers (O_DIRECT where the file system takes it), fsynced, then renamed over the target.

O_DIRECT keeps a store being written from pushing the source archive out of the page cache and skips the
kernel's copy; `TESSERA_TRANSCODE_DIRECT_IO=0` turns it off. File systems that refuse it (tmpfs, some FUSE)
get ordinary buffered writes, chosen at the first refusal."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import queue
from pathlib import Path

from transcode.storage.causes import os_error
from transcode.storage.objectwriter import ObjectWriter
from transcode.storage.writebehind import WriteBehind

STAGE_BYTES = 8 * 1024 * 1024
ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def direct_io_enabled() -> bool:
    """O_DIRECT unless the platform lacks it or `TESSERA_TRANSCODE_DIRECT_IO=0`."""
    return bool(_O_DIRECT) and os.environ.get("TESSERA_TRANSCODE_DIRECT_IO", "1") not in ("0", "false", "no")


class FileWriter(ObjectWriter):
    """Write `tmp`, then on commit fsync and rename it to `path`; abort removes it."""

    def __init__(self, path: Path, tmp: Path) -> None:
        super().__init__()
        self.path, self.tmp = path, tmp
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.direct = direct_io_enabled()
            try:
                self._fd = os.open(tmp, flags | (_O_DIRECT if self.direct else 0), 0o666)
            except OSError as e:
                if not self.direct or e.errno != errno.EINVAL:
                    raise
                self.direct = False
                self._fd = os.open(tmp, flags, 0o666)
        except OSError as e:
            raise os_error(str(path), e, "write") from e
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        for _ in range(2):  # one being written by the thread, one being filled here
            self._free.put(mmap.mmap(-1, STAGE_BYTES))
        self._buf: mmap.mmap | None = self._free.get()
        self._fill = 0
        self._offset = 0
        self._behind = WriteBehind(f"write {path.name}")

    def _write(self, data: bytes | memoryview) -> None:
        mv = memoryview(data).cast("B")
        pos, end = 0, len(mv)
        try:
            while pos < end:
                n = min(end - pos, STAGE_BYTES - self._fill)
                self._buf[self._fill:self._fill + n] = mv[pos:pos + n]
                self._fill += n
                pos += n
                if self._fill == STAGE_BYTES:
                    self._hand_off()
                    self._buf = self._take_buffer()
        except BaseException:
            self.abort()
            raise

    def _hand_off(self) -> None:
        """Queue the current staging buffer for hashing and writing at its offset."""
        buf, n, offset = self._buf, self._fill, self._offset
        self._buf, self._fill, self._offset = None, 0, offset + n
        try:
            self._behind.submit(self._flush, buf, n, offset)
        except BaseException:
            self._free.put(buf)
            raise

    def _take_buffer(self) -> mmap.mmap:
        while True:
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                self._behind.check()  # a failed write never returns its buffer

    def _flush(self, buf: mmap.mmap, n: int, offset: int) -> None:
        """Background thread: digest `n` bytes of `buf`, write them at `offset`, give the buffer back."""
        try:
            with memoryview(buf) as view:
                self._digest(view[:n])
                length = n
                if self.direct and n % ALIGN:  # O_DIRECT writes whole blocks; commit truncates the padding away
                    length = n + (-n % ALIGN)
                    buf[n:length] = bytes(length - n)
                self._pwrite_all(view[:length], offset)
        except OSError as e:
            raise os_error(str(self.path), e, "write") from e
        finally:
            self._free.put(buf)

    def _pwrite_all(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            try:
                done += os.pwrite(self._fd, view[done:], offset + done)
            except OSError as e:
                if not (self.direct and e.errno == errno.EINVAL and done == 0):
                    raise
                # the file system opened O_DIRECT but refuses the write: carry on buffered
                fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
                self.direct = False

    def commit(self) -> None:
        try:
            if self._fill:
                self._hand_off()
            self._behind.drain()
            os.ftruncate(self._fd, self.size)
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise os_error(str(self.path), e, "write") from e
        except BaseException:
            self.abort()
            raise
        finally:
            self._behind.close()

    def abort(self) -> None:
        self._behind.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.tmp.unlink(missing_ok=True)

    @property
    def etag(self) -> str | None:
        """Files have no ETag."""
        return None
