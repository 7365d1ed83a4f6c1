"""A seekable read-only file over one stored object, so readers that seek (pyarrow's Parquet reader) fetch
only the byte ranges they need instead of the whole object."""

from __future__ import annotations

import io
from typing import BinaryIO

from transcode.storage.base import Storage

BUFFER = 1 << 20


class _RangeFile(io.RawIOBase):
    """Each read is one `read_range` of the object at the current position."""

    def __init__(self, storage: Storage, key: str, size: int) -> None:
        self.storage, self.key, self.size, self.pos = storage, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        data = self.storage.read_range(self.key, self.pos, n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


def open_seekable(storage: Storage, key: str) -> BinaryIO:
    """The object as a seekable binary file: the file itself when local; otherwise ranged reads (buffered), or
    for an object no larger than the buffer, the object read whole at once (one request instead of the reader's
    several seeks, each a round trip)."""
    path = storage.local_path(key)
    if path is not None:
        return storage.open(key)
    size = storage.stat(key).size
    if size <= BUFFER:
        return io.BytesIO(storage.read(key))
    return io.BufferedReader(_RangeFile(storage, key, size), buffer_size=BUFFER)
